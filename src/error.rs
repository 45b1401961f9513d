//! One error type for the library, grouped by pipeline stage. Every variant names the file,
//! tensor or key at fault and, where there is one, the fix. `anyhow` lives only in `main.rs`.

use thiserror::Error;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the library can refuse, by stage.
#[derive(Debug, Error)]
pub enum Error {
    /// Reading a file from disk failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A GGUF file is malformed: truncated, corrupted, or of an unsupported version.
    #[error("{file}: invalid GGUF at byte {offset}: {reason}")]
    Gguf {
        file: String,
        offset: u64,
        reason: String,
    },

    /// A GGUF metadata key is missing or has the wrong type.
    #[error("{file}: metadata key `{key}`: {reason}")]
    Metadata {
        file: String,
        key: String,
        reason: String,
    },

    /// A tensor cannot be used: wrong dtype, wrong shape, missing, or its bytes are short.
    #[error("tensor `{tensor}`: {reason}")]
    Tensor { tensor: String, reason: String },

    /// A Hugging Face checkpoint directory or its JSON files are malformed.
    #[error("{path}: {reason}")]
    Checkpoint { path: String, reason: String },

    /// The tokenizer could not be built or failed to encode/decode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// The chat template failed to parse or render.
    #[error("chat template: {0}")]
    Template(String),

    /// The model configuration is not one this code can run.
    #[error("model config: {0}")]
    Config(String),

    /// A compute device could not be opened or used.
    #[error("device: {0}")]
    Device(String),

    /// Generation was asked for something impossible (e.g. a prompt longer than the context).
    #[error("generate: {0}")]
    Generate(String),
}

impl Error {
    /// Shorthand for an I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// Shorthand for a tensor error.
    pub fn tensor(tensor: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Tensor {
            tensor: tensor.into(),
            reason: reason.into(),
        }
    }
}
