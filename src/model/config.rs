//! The Llama-family hyper-parameters, read from GGUF metadata (`{arch}.*` keys) or from a
//! Hugging Face `config.json`. One struct serves SmolLM2, TinyLlama, Llama 2/3.x, Mistral and
//! Qwen2 (which adds q/k/v biases and does not permute Q/K in GGUF).

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// Llama 3.x frequency scaling (`rope_type: "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

/// Model hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// `llama`, `mistral` or `qwen2`.
    pub arch: String,
    pub vocab_size: usize,
    /// D.
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    /// H.
    pub num_heads: usize,
    /// Hkv.
    pub num_kv_heads: usize,
    /// Dh.
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3Scaling>,
    pub max_position_embeddings: usize,
    /// The output head reuses the token embedding.
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2).
    pub attention_bias: bool,
}

impl ModelConfig {
    /// Checks the numbers fit together, so the model code can rely on them.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_layers == 0 {
            return bad(format!("zero size in {self:?}"));
        }
        if self.num_heads == 0
            || self.num_kv_heads == 0
            || !self.num_heads.is_multiple_of(self.num_kv_heads)
        {
            return bad(format!(
                "{} query heads are not a multiple of {} KV heads",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("head dim {} must be even for RoPE", self.head_dim));
        }
        Ok(())
    }

    /// Reads `{arch}.*` keys of a GGUF file. `has_output` says whether `output.weight` exists
    /// (untied head).
    pub fn from_gguf(f: &GgufFile, has_output: bool) -> Result<Self> {
        let arch = f.get_str("general.architecture")?.to_string();
        if !matches!(arch.as_str(), "llama" | "mistral" | "qwen2") {
            return Err(Error::Config(format!(
                "{}: architecture `{arch}` is not Llama-shaped (supported: llama, mistral, qwen2)",
                f.name
            )));
        }
        let k = |s: &str| format!("{arch}.{s}");
        let u = |s: &str| f.get_u64(&k(s)).map(|v| v as usize);
        let hidden = u("embedding_length")?;
        let heads = u("attention.head_count")?;
        let vocab = match u("vocab_size") {
            Ok(v) => v,
            Err(_) => f
                .get("tokenizer.ggml.tokens")?
                .as_array()
                .map_or(0, |a| a.len()),
        };
        let cfg = ModelConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: u("feed_forward_length")?,
            num_layers: u("block_count")?,
            num_heads: heads,
            num_kv_heads: u("attention.head_count_kv").unwrap_or(heads),
            head_dim: u("attention.key_length")
                .or_else(|_| u("rope.dimension_count"))
                .unwrap_or(hidden / heads.max(1)),
            rms_norm_eps: f.get_f64(&k("attention.layer_norm_rms_epsilon"))?,
            rope_theta: f.get_f64(&k("rope.freq_base")).unwrap_or(10000.0),
            // llama.cpp stores Llama 3 scaling as a `rope_freqs.weight` tensor, applied by the model.
            rope_scaling: None,
            max_position_embeddings: u("context_length").unwrap_or(4096),
            tie_word_embeddings: !has_output,
            attention_bias: arch == "qwen2",
            arch,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a Hugging Face `config.json` (transformers 4 `rope_theta`/`rope_scaling` or
    /// transformers 5 `rope_parameters`).
    pub fn from_hf_json(text: &str, path: &str) -> Result<Self> {
        let err = |reason: String| Error::Checkpoint {
            path: path.into(),
            reason,
        };
        let j: Json = serde_json::from_str(text).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let model_type = j["model_type"].as_str().unwrap_or("llama").to_string();
        if !matches!(model_type.as_str(), "llama" | "mistral" | "qwen2") {
            return Err(err(format!(
                "model_type `{model_type}` is not supported (llama, mistral, qwen2)"
            )));
        }
        let u = |key: &str| -> Result<usize> {
            j[key]
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| err(format!("`{key}` is missing or not an integer")))
        };
        let hidden = u("hidden_size")?;
        let heads = u("num_attention_heads")?;
        let rope = if j["rope_parameters"].is_object() {
            &j["rope_parameters"]
        } else {
            &j["rope_scaling"]
        };
        let rope_theta = j["rope_theta"]
            .as_f64()
            .or(rope["rope_theta"].as_f64())
            .unwrap_or(10000.0);
        let rope_type = rope["rope_type"]
            .as_str()
            .or(rope["type"].as_str())
            .unwrap_or("default");
        let rope_scaling = match rope_type {
            "default" => None,
            "llama3" => {
                let f = |key: &str| {
                    rope[key]
                        .as_f64()
                        .ok_or_else(|| err(format!("rope `{key}` missing")))
                };
                Some(Llama3Scaling {
                    factor: f("factor")?,
                    low_freq_factor: f("low_freq_factor")?,
                    high_freq_factor: f("high_freq_factor")?,
                    original_max_position_embeddings: f("original_max_position_embeddings")?,
                })
            }
            other => {
                return Err(err(format!(
                    "rope_type `{other}` is not supported (default, llama3)"
                )));
            }
        };
        let cfg = ModelConfig {
            vocab_size: u("vocab_size")?,
            hidden_size: hidden,
            intermediate_size: u("intermediate_size")?,
            num_layers: u("num_hidden_layers")?,
            num_heads: heads,
            num_kv_heads: u("num_key_value_heads").unwrap_or(heads),
            head_dim: u("head_dim").unwrap_or(hidden / heads.max(1)),
            rms_norm_eps: j["rms_norm_eps"].as_f64().unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: u("max_position_embeddings").unwrap_or(4096),
            tie_word_embeddings: j["tie_word_embeddings"].as_bool().unwrap_or(false),
            attention_bias: j["attention_bias"]
                .as_bool()
                .unwrap_or(model_type == "qwen2"),
            arch: model_type,
        };
        cfg.validate().map_err(|e| err(e.to_string()))?;
        Ok(cfg)
    }

    /// RoPE inverse frequencies for the `head_dim / 2` rotation pairs, with Llama 3 scaling
    /// (transformers `_compute_llama3_parameters`) or llama.cpp's `rope_freqs` factors.
    pub fn inv_freq(&self, freq_factors: Option<&[f32]>) -> Vec<f64> {
        let half = self.head_dim / 2;
        (0..half)
            .map(|i| {
                // f32 like transformers (`base ** (arange(0, dim, 2).float() / dim)` in float32),
                // so RoPE angles round the same way as the reference.
                let mut f = (1.0f32
                    / (self.rope_theta as f32).powf((2 * i) as f32 / self.head_dim as f32))
                    as f64;
                if let Some(s) = self.rope_scaling {
                    let low_wl = s.original_max_position_embeddings / s.low_freq_factor;
                    let high_wl = s.original_max_position_embeddings / s.high_freq_factor;
                    let wl = 2.0 * std::f64::consts::PI / f;
                    if wl > low_wl {
                        f /= s.factor;
                    } else if wl >= high_wl {
                        let smooth = (s.original_max_position_embeddings / wl - s.low_freq_factor)
                            / (s.high_freq_factor - s.low_freq_factor);
                        f = (1.0 - smooth) * f / s.factor + smooth * f;
                    }
                }
                if let Some(ff) = freq_factors.and_then(|ff| ff.get(i)) {
                    f /= *ff as f64;
                }
                f
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_transformers5_and_llama3_configs() {
        let smol = r#"{"model_type":"llama","hidden_size":576,"intermediate_size":1536,
            "num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,"head_dim":64,
            "rms_norm_eps":1e-5,"rope_parameters":{"rope_theta":100000.0,"rope_type":"default"},
            "tie_word_embeddings":true,"vocab_size":49152,"max_position_embeddings":8192}"#;
        let c = ModelConfig::from_hf_json(smol, "c.json").unwrap();
        assert_eq!(
            (c.num_kv_heads, c.rope_theta, c.tie_word_embeddings),
            (3, 100000.0, true)
        );
        let l3 = r#"{"model_type":"llama","hidden_size":2048,"intermediate_size":8192,
            "num_hidden_layers":16,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,
            "rope_theta":500000.0,"rope_scaling":{"factor":32.0,"low_freq_factor":1.0,
            "high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"}}"#;
        let c = ModelConfig::from_hf_json(l3, "c.json").unwrap();
        let f = c.inv_freq(None);
        // Highest frequency is untouched; the lowest is divided by the factor (32).
        assert!((f[0] - 1.0).abs() < 1e-12);
        let plain = 1.0 / 500000f64.powf(2.0 * 31.0 / 64.0);
        // inv_freq is computed in f32 like transformers: compare relatively.
        assert!((f[31] / (plain / 32.0) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn rejects_inconsistent_heads() {
        let bad = r#"{"hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,
            "num_attention_heads":4,"num_key_value_heads":3,"vocab_size":10}"#;
        assert!(ModelConfig::from_hf_json(bad, "c.json").is_err());
    }
}
