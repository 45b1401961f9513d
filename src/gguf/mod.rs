//! GGUF: the llama.cpp model file. Spec: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.
//!
//! `reader` parses the header, metadata and tensor table with a bound check on every count,
//! length and offset (a corrupted file is an `Err`, never a panic or a huge allocation);
//! `quant` holds the block formats and their CPU dequantization, the reference twin of the
//! GPU kernels.

pub mod quant;
pub mod reader;
pub mod value;
pub mod writer;

pub use quant::GgmlType;
pub use reader::{GgufFile, TensorInfo};
pub use value::Value;
