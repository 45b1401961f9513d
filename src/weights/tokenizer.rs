//! One tokenizer type for both routes: Hugging Face `tokenizer.json` through the `tokenizers`
//! crate, and GGUF `tokenizer.ggml.*` metadata turned into the same `tokenizer.json` shape
//! (what transformers' GGUF converter does), so both encode identically. Special ids (bos, eos,
//! pad, end-of-turn) come from the checkpoint.

use serde_json::{Value as Json, json};

use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// GPT-2's split regex is ByteLevel's own (`use_regex: true`); these are the others llama.cpp
/// names in `tokenizer.ggml.pre` (llama-vocab.cpp).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// End-of-turn markers of common chat templates; generation stops on any present in the vocab.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
];

/// A byte range `[start, end)` in the encoded text.
pub type Span = (usize, usize);

/// A tokenizer plus the model's special tokens.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Padding id (may equal eos: padding is found from the attention mask, never by id).
    pub pad_id: Option<u32>,
    /// Ids that end generation: eos, generation_config's eos list, end-of-turn markers.
    pub stop_ids: Vec<u32>,
}

impl Tokenizer {
    fn finish(
        inner: tokenizers::Tokenizer,
        bos_id: Option<u32>,
        eos_id: Option<u32>,
        pad_id: Option<u32>,
        extra_stop: &[u32],
    ) -> Self {
        let name = |id: Option<u32>| id.and_then(|i| inner.id_to_token(i));
        let mut stop_ids: Vec<u32> = eos_id
            .into_iter()
            .chain(extra_stop.iter().copied())
            .collect();
        stop_ids.extend(END_OF_TURN.iter().filter_map(|t| inner.token_to_id(t)));
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Tokenizer {
            bos_token: name(bos_id),
            eos_token: name(eos_id),
            bos_id,
            eos_id,
            pad_id,
            stop_ids,
            inner,
        }
    }

    /// From `tokenizer.json` text plus the optional `tokenizer_config.json` and
    /// `generation_config.json` of the same checkpoint.
    pub fn from_hf(
        json_text: &str,
        tok_cfg: Option<&Json>,
        gen_cfg: Option<&Json>,
    ) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(json_text.as_bytes())
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        let tok_id = |key: &str| -> Option<u32> {
            let v = &tok_cfg?[key];
            let s = v.as_str().or_else(|| v["content"].as_str())?;
            inner.token_to_id(s)
        };
        let ids = |v: &Json| -> Vec<u32> {
            match v {
                Json::Number(n) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
                Json::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_u64().map(|x| x as u32))
                    .collect(),
                _ => vec![],
            }
        };
        let gen_eos = gen_cfg.map(|g| ids(&g["eos_token_id"])).unwrap_or_default();
        let eos = tok_id("eos_token").or(gen_eos.first().copied());
        let bos =
            tok_id("bos_token").or(gen_cfg.and_then(|g| ids(&g["bos_token_id"]).first().copied()));
        let pad =
            tok_id("pad_token").or(gen_cfg.and_then(|g| ids(&g["pad_token_id"]).first().copied()));
        Ok(Self::finish(inner, bos, eos, pad, &gen_eos))
    }

    /// From GGUF `tokenizer.ggml.*` metadata (BPE / `gpt2` models).
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let model = f.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(f.meta_err(
                "tokenizer.ggml.model",
                &format!("tokenizer model `{model}` is not supported yet (gpt2/BPE is); use the model's Hugging Face directory"),
            ));
        }
        let json = gguf_bpe_json(f)?;
        let inner = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes())
            .map_err(|e| Error::Tokenizer(format!("{}: tokenizer from metadata: {e}", f.name)))?;
        let id = |k: &str| f.get_u64(k).ok().map(|v| v as u32);
        Ok(Self::finish(
            inner,
            id("tokenizer.ggml.bos_token_id"),
            id("tokenizer.ggml.eos_token_id"),
            id("tokenizer.ggml.padding_token_id"),
            &id("tokenizer.ggml.eot_token_id")
                .into_iter()
                .collect::<Vec<_>>(),
        ))
    }

    /// Token ids of `text`; special tokens written in the text (e.g. `<|im_start|>`) are
    /// recognised, and no BOS/EOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Token ids of `text` with each token's byte range in `text`.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<Span>)> {
        let e = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok((e.get_ids().to_vec(), e.get_offsets().to_vec()))
    }

    /// Text of `ids`, special tokens included (they are part of what the model said).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The id to pad batches with: the pad token, else eos, else 0 (padding is masked by
    /// length, so any id works; a real token keeps embeddings in range).
    pub fn pad_or_eos(&self) -> u32 {
        self.pad_id.or(self.eos_id).unwrap_or(0)
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// Builds a `tokenizer.json` value from GGUF BPE metadata.
fn gguf_bpe_json(f: &GgufFile) -> Result<Json> {
    let tokens = f.get_str_array("tokenizer.ggml.tokens")?;
    let merges = f.get_str_array("tokenizer.ggml.merges")?;
    let types: Vec<u64> = match f
        .metadata
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.as_array())
    {
        Some(a) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
        None => vec![1; tokens.len()],
    };
    let vocab: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    // llama.cpp token types: 3 = control, 4 = user-defined; both are matched verbatim in text.
    let added: Vec<Json> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(types.get(*i), Some(3 | 4)))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": types[i] == 3})
        })
        .collect();
    let merges: Vec<Json> = merges
        .iter()
        .map(|m| match m.split_once(' ') {
            Some((a, b)) => Ok(json!([a, b])),
            None => Err(f.meta_err(
                "tokenizer.ggml.merges",
                &format!("merge `{m}` has no space"),
            )),
        })
        .collect::<Result<_>>()?;
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let pre = f.get_str("tokenizer.ggml.pre").unwrap_or("default");
    let pre_tokenizer = match pre {
        "default" | "gpt2" | "gpt-2" | "smollm" | "starcoder" | "refact" => byte_level(true),
        "llama3" | "llama-v3" | "llama-bpe" | "qwen2" | "deepseek-r1-qwen" => {
            let pattern = if pre.contains("qwen") {
                QWEN2_SPLIT
            } else {
                LLAMA3_SPLIT
            };
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
                byte_level(false)]})
        }
        other => {
            return Err(f.meta_err(
                "tokenizer.ggml.pre",
                &format!(
                    "pre-tokenizer `{other}` is not supported (gpt2, smollm, llama-bpe, qwen2)"
                ),
            ));
        }
    };
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": null, "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    }))
}
