//! A tiny random Llama built in memory (byte-level tokenizer, ChatML template) for fast
//! training-loop tests that need no files.

use std::collections::HashMap;
use std::sync::Arc;

use anytune::model::ModelConfig;
use anytune::weights::{HostTensor, ModelSource, Tokenizer, WeightSource};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct MapWeights(HashMap<String, HostTensor>);

impl WeightSource for MapWeights {
    fn get(&self, name: &str) -> anytune::Result<Option<HostTensor>> {
        Ok(self.0.get(name).cloned())
    }
}

/// Byte-level BPE over the 256 GPT-2 byte symbols (no merges) + ChatML specials.
pub fn tiny_tokenizer() -> Tokenizer {
    let cfg = serde_json::json!({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>"});
    byte_tokenizer(&["<|endoftext|>", "<|im_start|>", "<|im_end|>"], &cfg)
}

/// Byte-level BPE (no merges) with `specials` as ids 0.. and `tokenizer_config`-style `cfg`.
pub fn byte_tokenizer(specials: &[&str], cfg: &serde_json::Value) -> Tokenizer {
    // GPT-2's bytes_to_unicode table.
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut vocab = serde_json::Map::new();
    for s in specials {
        vocab.insert(s.to_string(), vocab.len().into());
    }
    let mut pairs: Vec<(u32, u32)> = bs.into_iter().zip(cs).collect();
    pairs.sort();
    for (_, c) in pairs {
        let k = char::from_u32(c).unwrap().to_string();
        let id = vocab.len();
        vocab.insert(k, id.into());
    }
    let added: Vec<serde_json::Value> = specials
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": []}
    });
    Tokenizer::from_hf(&json.to_string(), Some(cfg), None).unwrap()
}

/// A 2-layer, d=32 Llama with random weights (seeded).
pub fn tiny_source(seed: u64) -> ModelSource {
    let cfg = ModelConfig {
        arch: "llama".into(),
        vocab_size: 259,
        hidden_size: 32,
        intermediate_size: 64,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        max_position_embeddings: 512,
        tie_word_embeddings: true,
        attention_bias: false,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = HashMap::new();
    let mut put = |name: String, shape: Vec<usize>, scale: f32, rng: &mut StdRng| {
        let n: usize = shape.iter().product();
        // scale 0 = a norm weight of ones.
        let data = if scale == 0.0 {
            vec![1.0; n]
        } else {
            (0..n).map(|_| rng.random_range(-scale..scale)).collect()
        };
        w.insert(name, HostTensor { shape, data });
    };
    put(
        "model.embed_tokens.weight".into(),
        vec![259, 32],
        0.5,
        &mut rng,
    );
    put("model.norm.weight".into(), vec![32], 0.0, &mut rng);
    for i in 0..2 {
        let l = |s: &str| format!("model.layers.{i}.{s}");
        for (n, shape) in [
            ("self_attn.q_proj.weight", vec![32, 32]),
            ("self_attn.k_proj.weight", vec![16, 32]),
            ("self_attn.v_proj.weight", vec![16, 32]),
            ("self_attn.o_proj.weight", vec![32, 32]),
            ("mlp.gate_proj.weight", vec![64, 32]),
            ("mlp.up_proj.weight", vec![64, 32]),
            ("mlp.down_proj.weight", vec![32, 64]),
        ] {
            put(l(n), shape, 0.2, &mut rng);
        }
        put(l("input_layernorm.weight"), vec![32], 0.0, &mut rng);
        put(
            l("post_attention_layernorm.weight"),
            vec![32],
            0.0,
            &mut rng,
        );
    }
    ModelSource {
        name: "tiny".into(),
        config: cfg,
        tokenizer: tiny_tokenizer(),
        chat_template: Some(anytune::data::template::CHATML.into()),
        weights: Arc::new(MapWeights(w)),
    }
}
