//! Hugging Face checkpoint directories: `config.json`, `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`), `tokenizer.json`, `tokenizer_config.json`,
//! `generation_config.json`, `chat_template.jinja`. Tensors are read through the `safetensors`
//! crate from memory-mapped shards; F32, F16 and BF16 become f32.

use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::sync::Arc;

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};
#[cfg(not(target_arch = "wasm32"))]
use serde_json::Value as Json;

use super::{Bytes, HostTensor, WeightSource};
#[cfg(not(target_arch = "wasm32"))]
use super::{ModelSource, Tokenizer};
use crate::error::{Error, Result};
#[cfg(not(target_arch = "wasm32"))]
use crate::model::config::ModelConfig;

/// Weights from one or more safetensors shards.
pub struct SafetensorsWeights {
    shards: Vec<(String, Arc<Bytes>)>,
    /// tensor name -> shard index
    index: HashMap<String, usize>,
}

impl SafetensorsWeights {
    /// Indexes the given shards (name for errors, bytes).
    pub fn new(shards: Vec<(String, Bytes)>) -> Result<Self> {
        let mut index = HashMap::new();
        let shards: Vec<(String, Arc<Bytes>)> =
            shards.into_iter().map(|(n, b)| (n, Arc::new(b))).collect();
        for (i, (name, bytes)) in shards.iter().enumerate() {
            let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Checkpoint {
                path: name.clone(),
                reason: format!("invalid safetensors: {e}"),
            })?;
            for t in st.names() {
                index.insert(t.to_string(), i);
            }
        }
        Ok(SafetensorsWeights { shards, index })
    }
}

/// Converts a safetensors view to f32 (F32, F16, BF16).
pub fn view_to_f32(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(Error::tensor(
                name,
                format!("dtype {other:?} is not supported (F32, F16, BF16)"),
            ));
        }
    })
}

impl WeightSource for SafetensorsWeights {
    fn get(&self, hf_name: &str) -> Result<Option<HostTensor>> {
        let Some(&i) = self.index.get(hf_name) else {
            return Ok(None);
        };
        let (shard, bytes) = &self.shards[i];
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Checkpoint {
            path: shard.clone(),
            reason: format!("invalid safetensors: {e}"),
        })?;
        let view = st
            .tensor(hf_name)
            .map_err(|e| Error::tensor(hf_name, format!("{shard}: {e}")))?;
        let data = view_to_f32(hf_name, view.dtype(), view.data())?;
        Ok(Some(HostTensor {
            shape: view.shape().to_vec(),
            data,
        }))
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

#[cfg(not(target_arch = "wasm32"))]
fn read_json(path: &Path) -> Result<Option<Json>> {
    if !path.exists() {
        return Ok(None);
    }
    serde_json::from_str(&read(path)?)
        .map(Some)
        .map_err(|e| Error::Checkpoint {
            path: path.display().to_string(),
            reason: format!("invalid JSON: {e}"),
        })
}

#[cfg(not(target_arch = "wasm32"))]
/// The shard files of a checkpoint directory.
fn shard_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index_path = dir.join("model.safetensors.index.json");
    let Some(index) = read_json(&index_path)? else {
        return Err(Error::Checkpoint {
            path: dir.display().to_string(),
            reason: "neither model.safetensors nor model.safetensors.index.json found".into(),
        });
    };
    let map = index["weight_map"]
        .as_object()
        .ok_or_else(|| Error::Checkpoint {
            path: index_path.display().to_string(),
            reason: "`weight_map` is missing".into(),
        })?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

#[cfg(not(target_arch = "wasm32"))]
/// The chat template: `chat_template.jinja` (transformers 5) or `tokenizer_config.json`'s
/// `chat_template` (a string, or a list of named templates of which we take `default`).
fn chat_template(dir: &Path, tok_cfg: Option<&Json>) -> Result<Option<String>> {
    let file = dir.join("chat_template.jinja");
    if file.exists() {
        return read(&file).map(Some);
    }
    Ok(match tok_cfg.map(|c| &c["chat_template"]) {
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Array(list)) => list
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str().map(String::from)),
        _ => None,
    })
}

#[cfg(not(target_arch = "wasm32"))]
/// Opens a Hugging Face checkpoint directory.
pub fn open_dir(dir: &Path) -> Result<ModelSource> {
    let cfg_path = dir.join("config.json");
    let config = ModelConfig::from_hf_json(&read(&cfg_path)?, &cfg_path.display().to_string())?;
    let tok_cfg = read_json(&dir.join("tokenizer_config.json"))?;
    let gen_cfg = read_json(&dir.join("generation_config.json"))?;
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = Tokenizer::from_hf(&read(&tok_path)?, tok_cfg.as_ref(), gen_cfg.as_ref())
        .map_err(|e| Error::Checkpoint {
            path: tok_path.display().to_string(),
            reason: e.to_string(),
        })?;
    let shards = shard_files(dir)?
        .into_iter()
        .map(|p| Ok((p.display().to_string(), Bytes::map(&p)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(ModelSource {
        name: dir.display().to_string(),
        config,
        tokenizer,
        chat_template: chat_template(dir, tok_cfg.as_ref())?,
        weights: Arc::new(SafetensorsWeights::new(shards)?),
    })
}
