//! Checkpoint loading: a GGUF file or a Hugging Face directory becomes one `ModelSource` —
//! config, tokenizer, chat template and a weight getter keyed by Hugging Face tensor names in
//! Hugging Face layout (rows = output features, Q/K in rotate-half order). The model code
//! never sees which format it came from.

pub mod gguf;
pub mod names;
pub mod safetensors;
pub mod tokenizer;

use std::sync::Arc;

use crate::error::Result;
use crate::model::config::ModelConfig;
pub use tokenizer::Tokenizer;

/// A dense f32 tensor on the host, row-major.
#[derive(Debug, Clone)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A block-quantized matrix kept in its GGUF format, repacked for the kernels
/// (`kernels::layout`), rows in HF order.
#[derive(Debug, Clone)]
pub struct QuantHost {
    pub qtype: crate::kernels::QuantType,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    pub words: Vec<u32>,
}

/// File bytes: memory-mapped natively, owned in the browser.
pub enum Bytes {
    Owned(Vec<u8>),
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            #[cfg(not(target_arch = "wasm32"))]
            Bytes::Mapped(m) => m,
        }
    }
}

impl Bytes {
    /// Memory-maps `path` read-only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn map(path: &std::path::Path) -> Result<Bytes> {
        let f = std::fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
        // SAFETY: the map is read-only; a file truncated underneath us while mapped would
        // fault, which is the same contract every mmap-based model loader accepts.
        let m = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| crate::Error::io(path, e))?;
        Ok(Bytes::Mapped(m))
    }
}

/// Where weights come from, by Hugging Face name.
pub trait WeightSource: Send + Sync {
    /// The tensor named `hf_name` in HF layout, or `None` if the checkpoint lacks it.
    fn get(&self, hf_name: &str) -> Result<Option<HostTensor>>;

    /// The tensor in its quantized form when it is stored in a type the kernels read
    /// (`kernels::QuantType`); `None` for float tensors, other types and formats.
    fn get_quantized(&self, _hf_name: &str) -> Result<Option<QuantHost>> {
        Ok(None)
    }

    /// llama.cpp's per-pair RoPE frequency factors (`rope_freqs.weight`, Llama 3.1+ GGUF).
    fn rope_freq_factors(&self) -> Result<Option<Vec<f32>>> {
        Ok(None)
    }
}

/// Everything needed to build and talk to a model.
pub struct ModelSource {
    /// Display name (file or directory).
    pub name: String,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    /// The model's own Jinja chat template, if it ships one.
    pub chat_template: Option<String>,
    pub weights: Arc<dyn WeightSource>,
}

impl ModelSource {
    /// Opens a `.gguf` file or a Hugging Face checkpoint directory.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &std::path::Path) -> Result<ModelSource> {
        if path.is_dir() {
            safetensors::open_dir(path)
        } else if path.exists() {
            gguf::open_bytes(Bytes::map(path)?, &path.display().to_string())
        } else {
            Err(crate::Error::Checkpoint {
                path: path.display().to_string(),
                reason: "no such file or directory (pass a .gguf file or a Hugging Face model directory; \
                         scripts/fetch-model.sh fetches the demo model)"
                    .into(),
            })
        }
    }

    /// Opens a GGUF model held in memory (the browser route).
    pub fn from_gguf_bytes(bytes: Vec<u8>, name: &str) -> Result<ModelSource> {
        gguf::open_bytes(Bytes::Owned(bytes), name)
    }
}
