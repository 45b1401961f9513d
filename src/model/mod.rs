//! The Llama architecture, written once over burn's run-time `Device` (CPU `flex` or wgpu):
//! config, building blocks (norm, RoPE, attention, MLP), the model and its KV cache.

pub mod config;
pub mod layers;
pub mod llama;
pub mod lora;
pub mod memory;

pub use config::ModelConfig;
pub use llama::{BaseWeights, Embedding, KvCache, Llama, LoadOptions};
