//! GGUF -> `ModelSource`: config from `{arch}.*` keys, tokenizer and chat template from
//! `tokenizer.*` keys, weights dequantized on request and un-permuted to HF row order.

use std::sync::Arc;

use super::names::{hf_to_gguf, permuted_heads, unpermute_rows};
use super::{Bytes, HostTensor, ModelSource, QuantHost, Tokenizer, WeightSource};
use crate::error::{Error, Result};
use crate::gguf::{GgufFile, quant};
use crate::kernels::{QuantType, layout};
use crate::model::config::ModelConfig;

/// Weights read from a GGUF file.
pub struct GgufWeights {
    pub bytes: Arc<Bytes>,
    pub file: GgufFile,
    /// (n_head, n_head_kv) when Q/K rows are in llama.cpp's permuted order.
    permuted: Option<(usize, usize)>,
}

impl GgufWeights {
    /// Raw block bytes of tensor `gguf_name` plus its info.
    pub fn raw(&self, gguf_name: &str) -> Result<(&crate::gguf::TensorInfo, &[u8])> {
        let info = self
            .file
            .tensor(gguf_name)
            .ok_or_else(|| Error::tensor(gguf_name, format!("not in {}", self.file.name)))?;
        Ok((info, info.data(&self.bytes)?))
    }
}

impl WeightSource for GgufWeights {
    fn get(&self, hf_name: &str) -> Result<Option<HostTensor>> {
        let Some(g) = hf_to_gguf(hf_name) else {
            return Err(Error::tensor(hf_name, "has no GGUF name in weights::names"));
        };
        if self.file.tensor(&g).is_none() {
            return Ok(None);
        }
        let (info, raw) = self.raw(&g)?;
        let shape = info.shape();
        let mut data = quant::dequantize(info.dtype, raw, info.n_elements() as usize, &g)?;
        if let Some((nh, nkv)) = self.permuted
            && let Some(heads) = permuted_heads(&g, nh, nkv)
        {
            data = unpermute_rows(&data, shape[0], heads);
        }
        Ok(Some(HostTensor { shape, data }))
    }

    fn get_quantized(&self, hf_name: &str) -> Result<Option<QuantHost>> {
        let Some(g) = hf_to_gguf(hf_name) else {
            return Ok(None);
        };
        let Some(info) = self.file.tensor(&g) else {
            return Ok(None);
        };
        let shape = info.shape();
        let Some(qtype) = QuantType::from_ggml(info.dtype) else {
            return Ok(None);
        };
        if shape.len() != 2 {
            return Ok(None);
        }
        let (_, raw) = self.raw(&g)?;
        let (rows, cols) = (shape[0], shape[1]);
        let words = match self
            .permuted
            .and_then(|(nh, nkv)| permuted_heads(&g, nh, nkv))
        {
            Some(heads) => layout::repack(qtype, &unpermute_rows(raw, rows, heads), &g)?,
            None => layout::repack(qtype, raw, &g)?,
        };
        Ok(Some(QuantHost {
            qtype,
            rows,
            cols,
            words,
        }))
    }

    fn rope_freq_factors(&self) -> Result<Option<Vec<f32>>> {
        match self.file.tensor("rope_freqs.weight") {
            None => Ok(None),
            Some(info) => {
                let raw = info.data(&self.bytes)?;
                quant::dequantize(info.dtype, raw, info.n_elements() as usize, &info.name).map(Some)
            }
        }
    }
}

/// Parses a GGUF file held in `bytes` into a model source.
pub fn open_bytes(bytes: Bytes, name: &str) -> Result<ModelSource> {
    let file = GgufFile::parse(&bytes, name)?;
    let config = ModelConfig::from_gguf(&file, file.tensor("output.weight").is_some())?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let chat_template = file
        .get_str("tokenizer.chat_template")
        .ok()
        .map(str::to_string);
    // llama.cpp permutes Q/K rows for `llama` (incl. Mistral/Llama 3) but not for `qwen2`.
    let permuted = (config.arch != "qwen2").then_some((config.num_heads, config.num_kv_heads));
    Ok(ModelSource {
        name: name.to_string(),
        config,
        tokenizer,
        chat_template,
        weights: Arc::new(GgufWeights {
            bytes: Arc::new(bytes),
            file,
            permuted,
        }),
    })
}
