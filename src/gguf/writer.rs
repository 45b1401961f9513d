//! A GGUF v3 writer (metadata, F32 / Q8_0 / Q4_1 tensors, alignment) and `tiny_llama`, a small
//! random Llama with a byte-level BPE tokenizer and the ChatML template: a real, quantized
//! model file for tests that must run fast — the browser tests load it in Chromium, and the
//! native CLI trains the same file to compare adapters.

use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Builds a GGUF file in memory.
pub struct GgufWriter {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
    alignment: usize,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self {
            kv: Vec::new(),
            n_kv: 0,
            infos: Vec::new(),
            n_tensors: 0,
            data: Vec::new(),
            alignment: 32,
        }
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

impl GgufWriter {
    fn key(&mut self, k: &str, ty: u32) {
        put_str(&mut self.kv, k);
        self.kv.extend(ty.to_le_bytes());
        self.n_kv += 1;
    }
    pub fn kv_str(&mut self, k: &str, v: &str) {
        self.key(k, 8);
        put_str(&mut self.kv, v);
    }
    pub fn kv_u32(&mut self, k: &str, v: u32) {
        self.key(k, 4);
        self.kv.extend(v.to_le_bytes());
    }
    pub fn kv_f32(&mut self, k: &str, v: f32) {
        self.key(k, 6);
        self.kv.extend(v.to_le_bytes());
    }
    pub fn kv_str_array(&mut self, k: &str, v: &[String]) {
        self.key(k, 9);
        self.kv.extend(8u32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for x in v {
            put_str(&mut self.kv, x);
        }
    }
    pub fn kv_i32_array(&mut self, k: &str, v: &[i32]) {
        self.key(k, 9);
        self.kv.extend(5u32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for x in v {
            self.kv.extend(x.to_le_bytes());
        }
    }

    /// A tensor from raw ggml bytes; `dims` in ggml order (fastest first).
    fn tensor_raw(&mut self, name: &str, dims: &[usize], ggml_type: u32, bytes: &[u8]) {
        while !self.data.len().is_multiple_of(self.alignment) {
            self.data.push(0);
        }
        put_str(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend((*d as u64).to_le_bytes());
        }
        self.infos.extend(ggml_type.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        self.n_tensors += 1;
    }

    pub fn tensor_f32(&mut self, name: &str, dims: &[usize], v: &[f32]) {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensor_raw(name, dims, 0, &b);
    }

    /// Q8_0 (ggml `quantize_row_q8_0_ref`): per 32 values d = max|x| / 127, q = round(x / d).
    pub fn tensor_q8_0(&mut self, name: &str, dims: &[usize], v: &[f32]) {
        let mut b = Vec::with_capacity(v.len() / 32 * 34);
        for blk in v.chunks_exact(32) {
            let amax = blk.iter().fold(0f32, |m, x| m.max(x.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            b.extend(f16::from_f32(d).to_le_bytes());
            b.extend(blk.iter().map(|x| (x * id).round() as i8 as u8));
        }
        self.tensor_raw(name, dims, 8, &b);
    }

    /// Q4_1 (ggml `quantize_row_q4_1_ref`): per 32 values d = (max - min) / 15, m = min,
    /// q = round((x - min) / d) clamped to 0..15.
    pub fn tensor_q4_1(&mut self, name: &str, dims: &[usize], v: &[f32]) {
        let mut b = Vec::with_capacity(v.len() / 32 * 20);
        for blk in v.chunks_exact(32) {
            let (mn, mx) = blk
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, z), x| (a.min(*x), z.max(*x)));
            let d = (mx - mn) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            b.extend(f16::from_f32(d).to_le_bytes());
            b.extend(f16::from_f32(mn).to_le_bytes());
            let q = |x: f32| (((x - mn) * id + 0.5) as i32).clamp(0, 15) as u8;
            for j in 0..16 {
                b.push(q(blk[j]) | (q(blk[j + 16]) << 4));
            }
        }
        self.tensor_raw(name, dims, 3, &b);
    }

    /// The file: header, metadata, tensor infos, aligned data.
    pub fn finish(mut self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(3u32.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend((self.n_kv + 1).to_le_bytes());
        put_str(&mut out, "general.alignment");
        out.extend(4u32.to_le_bytes());
        out.extend((self.alignment as u32).to_le_bytes());
        out.append(&mut self.kv);
        out.append(&mut self.infos);
        while !out.len().is_multiple_of(self.alignment) {
            out.push(0);
        }
        out.append(&mut self.data);
        out
    }
}

/// GPT-2's byte -> printable character table (`bytes_to_unicode`): the vocabulary strings of
/// a byte-level BPE.
fn byte_chars() -> Vec<String> {
    let direct =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut n = 0;
    (0u32..256)
        .map(|b| {
            let c = if direct(b) {
                b
            } else {
                n += 1;
                255 + n
            };
            char::from_u32(c).map(String::from).unwrap_or_default()
        })
        .collect()
}

/// A random tiny Llama (2 layers, d 32, 4 heads / 2 KV heads, FFN 64) with a byte-level
/// tokenizer (256 bytes + `<|im_start|>`, `<|im_end|>`), ChatML, a Q8_0 tied embedding and
/// Q4_1 projections — the same types as the real test model.
pub fn tiny_llama(seed: u64) -> Vec<u8> {
    let (d, f, layers, vocab) = (32usize, 64usize, 2usize, 258usize);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rand =
        |n: usize, s: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(-s..s)).collect() };
    let mut w = GgufWriter::default();
    w.kv_str("general.architecture", "llama");
    w.kv_str("general.name", "anytune tiny llama");
    w.kv_u32("llama.context_length", 512);
    w.kv_u32("llama.embedding_length", d as u32);
    w.kv_u32("llama.feed_forward_length", f as u32);
    w.kv_u32("llama.block_count", layers as u32);
    w.kv_u32("llama.attention.head_count", 4);
    w.kv_u32("llama.attention.head_count_kv", 2);
    w.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
    w.kv_f32("llama.rope.freq_base", 10000.0);
    w.kv_u32("llama.vocab_size", vocab as u32);
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_str("tokenizer.ggml.pre", "default");
    let mut tokens = byte_chars();
    tokens.push("<|im_start|>".into());
    tokens.push("<|im_end|>".into());
    let mut types = vec![1i32; 256];
    types.extend([3, 3]);
    w.kv_str_array("tokenizer.ggml.tokens", &tokens);
    w.kv_i32_array("tokenizer.ggml.token_type", &types);
    w.kv_str_array("tokenizer.ggml.merges", &[]);
    w.kv_u32("tokenizer.ggml.bos_token_id", 256);
    w.kv_u32("tokenizer.ggml.eos_token_id", 257);
    w.kv_u32("tokenizer.ggml.padding_token_id", 257);
    w.kv_str("tokenizer.chat_template", crate::data::template::CHATML);
    w.tensor_q8_0("token_embd.weight", &[d, vocab], &rand(d * vocab, 0.5));
    w.tensor_f32("output_norm.weight", &[d], &vec![1.0; d]);
    for i in 0..layers {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        w.tensor_f32(&n("attn_norm"), &[d], &vec![1.0; d]);
        w.tensor_f32(&n("ffn_norm"), &[d], &vec![1.0; d]);
        for (name, inp, out) in [
            ("attn_q", d, d),
            ("attn_k", d, d / 2),
            ("attn_v", d, d / 2),
            ("attn_output", d, d),
            ("ffn_gate", d, f),
            ("ffn_up", d, f),
            ("ffn_down", f, d),
        ] {
            w.tensor_q4_1(&n(name), &[inp, out], &rand(inp * out, 0.2));
        }
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::ModelSource;

    #[test]
    fn tiny_llama_loads_as_a_model() {
        let src = ModelSource::from_gguf_bytes(tiny_llama(1), "tiny.gguf").unwrap();
        assert_eq!(src.config.vocab_size, 258);
        assert_eq!(src.config.num_layers, 2);
        assert!(src.config.tie_word_embeddings);
        let ids = src
            .tokenizer
            .encode("<|im_start|>user\nhé<|im_end|>")
            .unwrap();
        assert_eq!(ids[0], 256);
        assert_eq!(*ids.last().unwrap(), 257);
        assert_eq!(
            src.tokenizer.decode(&ids).unwrap(),
            "<|im_start|>user\nhé<|im_end|>"
        );
        let q = src
            .weights
            .get_quantized("model.layers.0.mlp.up_proj.weight")
            .unwrap()
            .unwrap();
        assert_eq!((q.rows, q.cols), (64, 32));
        let e = src
            .weights
            .get("model.embed_tokens.weight")
            .unwrap()
            .unwrap();
        assert_eq!(e.shape, vec![258, 32]);
        assert!(e.data.iter().all(|x| x.abs() <= 0.51));
    }
}
