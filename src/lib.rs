//! anytune: LoRA fine-tuning for Llama-class models on any GPU.
//!
//! The pipeline, in module order (no module imports a later stage):
//!
//! ```text
//! bytes (.gguf | HF dir) --gguf / weights--> ModelSource {config, tokenizer, template, weights}
//!   --model::Llama::load--> Llama on a burn Device (flex CPU or wgpu)
//! messages --data::template--> prompt text --tokenizer--> ids
//!   --Llama::forward / step--> logits --generate--> tokens
//! ```

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod export;
pub mod generate;
pub mod gguf;
pub mod kernels;
pub mod model;
pub mod train;
pub mod util;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod weights;

pub use error::{Error, Result};
