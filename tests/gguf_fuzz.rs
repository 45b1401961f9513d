//! Acceptance: every truncation of a small valid GGUF, and 1,000 random byte flips of it, give
//! `Err` (or a valid parse) from the reader and never a panic.

use anytune::gguf::GgufFile;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A small but real GGUF: a tiny llama with tokenizer metadata, written by our writer below.
fn small_gguf() -> Vec<u8> {
    let mut w = Writer::default();
    w.kv_str("general.architecture", "llama");
    w.kv_u32("general.alignment", 32);
    w.kv_u32("llama.block_count", 1);
    w.kv_u32("llama.embedding_length", 32);
    w.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_str_array("tokenizer.ggml.tokens", &["a", "b", "ab", "<|im_end|>"]);
    w.kv_str_array("tokenizer.ggml.merges", &["a b"]);
    w.tensor("token_embd.weight", &[32, 4], 8, 4 * 34); // Q8_0
    w.tensor("blk.0.attn_norm.weight", &[32], 0, 128); // F32
    w.tensor("blk.0.attn_q.weight", &[32, 32], 2, 32 * 18); // Q4_0
    w.finish()
}

#[derive(Default)]
struct Writer {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data_len: u64,
}

impl Writer {
    fn s(b: &mut Vec<u8>, x: &str) {
        b.extend((x.len() as u64).to_le_bytes());
        b.extend(x.as_bytes());
    }
    fn key(&mut self, k: &str, ty: u32) {
        Self::s(&mut self.kv, k);
        self.kv.extend(ty.to_le_bytes());
        self.n_kv += 1;
    }
    fn kv_str(&mut self, k: &str, v: &str) {
        self.key(k, 8);
        Self::s(&mut self.kv, v);
    }
    fn kv_u32(&mut self, k: &str, v: u32) {
        self.key(k, 4);
        self.kv.extend(v.to_le_bytes());
    }
    fn kv_f32(&mut self, k: &str, v: f32) {
        self.key(k, 6);
        self.kv.extend(v.to_le_bytes());
    }
    fn kv_str_array(&mut self, k: &str, v: &[&str]) {
        self.key(k, 9);
        self.kv.extend(8u32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for x in v {
            Self::s(&mut self.kv, x);
        }
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, n_bytes: u64) {
        Self::s(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend(self.data_len.to_le_bytes());
        self.data_len += n_bytes.div_ceil(32) * 32;
        self.n_tensors += 1;
    }
    fn finish(self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(self.n_tensors.to_le_bytes());
        b.extend(self.n_kv.to_le_bytes());
        b.extend(self.kv);
        b.extend(self.infos);
        while !b.len().is_multiple_of(32) {
            b.push(0);
        }
        let n = b.len() + self.data_len as usize;
        b.extend(
            (0..)
                .map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8)
                .take(n - b.len()),
        );
        b
    }
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = small_gguf();
    let full = GgufFile::parse(&bytes, "small.gguf").expect("the untouched file parses");
    assert_eq!(full.tensors.len(), 3);
    for n in 0..bytes.len() {
        let r = std::panic::catch_unwind(|| GgufFile::parse(&bytes[..n], "small.gguf"));
        match r {
            Ok(Err(_)) => {}
            Ok(Ok(_)) => panic!("truncation to {n} bytes parsed"),
            Err(_) => panic!("truncation to {n} bytes panicked"),
        }
    }
}

#[test]
fn random_byte_flips_never_panic() {
    let bytes = small_gguf();
    let mut rng = StdRng::seed_from_u64(42);
    let (mut errors, mut ok) = (0, 0);
    for _ in 0..1000 {
        let mut b = bytes.clone();
        let flips = rng.random_range(1..=4);
        for _ in 0..flips {
            let i = rng.random_range(0..b.len());
            b[i] ^= 1 << rng.random_range(0..8);
        }
        match std::panic::catch_unwind(|| GgufFile::parse(&b, "flipped.gguf")) {
            Ok(Err(_)) => errors += 1,
            // A flip inside tensor data or a string's text can leave a valid file.
            Ok(Ok(f)) => {
                ok += 1;
                for t in &f.tensors {
                    assert!(
                        t.data(&b).is_ok(),
                        "validated tensor {} lies outside the file",
                        t.name
                    );
                }
            }
            Err(_) => panic!("a byte flip made the reader panic"),
        }
    }
    eprintln!("1000 flipped files: {errors} errors, {ok} still valid");
    assert!(errors > 0);
}
