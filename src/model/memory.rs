//! Device-memory accounting for a training run: what the frozen base, the LoRA adapters with
//! their AdamW state, and the activations kept for the backward pass take. The same formulas
//! print the memory report of `anytune train` and the sizing table in docs/memory.md
//! (`anytune plan`), so the docs come from the code.
//!
//! Activations count the tensors burn's autodiff keeps alive for the backward of *our* forward
//! (layers.rs, lora.rs, train/loss.rs), per block for N = B·T tokens:
//! block inputs and RMSNorm intermediates (6·N·D), q, k, v after RoPE and the attention
//! output (N·Dh·(2H + 2Hkv)), scores and softmax (2·B·H·T²), SwiGLU's gate, silu, up and
//! product (4·N·F), adapter inputs after dropout when dropout > 0, and the thin LoRA
//! intermediates (7·N·r). The loss keeps three f32 copies of the logits of the labelled
//! positions (logits, shifted, exp). With per-block recomputation only each block's input
//! stays, plus one block's worth while it is recomputed, and the loss is backpropagated one
//! logits chunk (≤ 64 MiB) at a time.

use serde::Serialize;

use super::config::ModelConfig;
use crate::kernels::QuantType;

/// Bytes by purpose.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct MemoryPlan {
    pub base_weights: u64,
    /// Adapter values, their gradients and the two AdamW moments (f32).
    pub lora_and_optimizer: u64,
    pub activations: u64,
}

impl MemoryPlan {
    pub fn total(&self) -> u64 {
        self.base_weights + self.lora_and_optimizer + self.activations
    }
}

/// The shape of one training step.
#[derive(Debug, Clone, Copy)]
pub struct StepShape {
    pub batch: usize,
    pub seq_len: usize,
    /// Positions with a loss label (≤ batch · seq_len).
    pub labelled: usize,
    pub rank: usize,
    /// How many of the seven projections carry an adapter.
    pub targets: usize,
    pub dropout: bool,
    pub recompute: bool,
    /// The CPU backend's fused ops (`kernels::cpu_ops`): the attention softmax keeps only its
    /// probabilities, SiLU·up only its two inputs.
    pub fused: bool,
}

/// Trainable LoRA values on every block: r · (in + out) per targeted projection.
pub fn lora_params(c: &ModelConfig, rank: usize, targets: &[&str]) -> u64 {
    let (d, f) = (c.hidden_size, c.intermediate_size);
    let (qd, kvd) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let per: usize = targets
        .iter()
        .map(|t| match *t {
            "q_proj" => d + qd,
            "k_proj" | "v_proj" => d + kvd,
            "o_proj" => qd + d,
            _ => d + f, // gate_proj, up_proj, down_proj
        })
        .sum();
    (c.num_layers * rank * per) as u64
}

/// Values, gradients and two AdamW moments, f32.
pub fn lora_and_optimizer_bytes(params: u64) -> u64 {
    4 * 4 * params
}

/// Activation bytes of one block's backward graph.
fn block_activations(c: &ModelConfig, s: &StepShape) -> u64 {
    let n = (s.batch * s.seq_len) as u64;
    let (d, f, dh) = (
        c.hidden_size as u64,
        c.intermediate_size as u64,
        c.head_dim as u64,
    );
    let (h, hkv) = (c.num_heads as u64, c.num_kv_heads as u64);
    let t = s.seq_len as u64;
    // Composed: attention scores + probabilities; gate, up, σ(gate) and silu(gate) outputs.
    let (att, mlp) = if s.fused { (1, 3) } else { (2, 4) };
    let mut elems =
        6 * n * d + n * dh * (2 * h + 2 * hkv) + att * s.batch as u64 * h * t * t + mlp * n * f;
    if s.dropout {
        // q, k, v, gate, up see D-wide inputs; o sees H·Dh; down sees F.
        elems += n * (5 * d + h * dh + f);
    }
    elems += 7 * n * s.rank as u64;
    4 * elems
}

/// Activation bytes of a whole step.
pub fn activation_bytes(c: &ModelConfig, s: &StepShape) -> u64 {
    let n = (s.batch * s.seq_len) as u64;
    // With recomputation the loss is backpropagated one logits chunk at a time.
    let rows = if s.recompute {
        let chunk_rows = crate::train::loss::DEFAULT_LOGITS_CHUNK_BYTES / (4 * c.vocab_size);
        s.labelled.min(chunk_rows.max(1))
    } else {
        s.labelled
    };
    let logits = 3 * 4 * rows as u64 * c.vocab_size as u64;
    let block = block_activations(c, s);
    let blocks = if s.recompute {
        c.num_layers as u64 * 4 * n * c.hidden_size as u64 + block
    } else {
        c.num_layers as u64 * block
    };
    blocks + logits
}

/// llama.cpp's type choice for `Q4_K_M` (`llama_tensor_get_type`): Q6_K for the output head
/// (or a tied embedding), and for `attn_v` / `ffn_down` on the first and last eighth of the
/// layers and every third layer between; Q4_K elsewhere.
pub fn q4_k_m_type(tensor: &str, layer: usize, n_layers: usize) -> QuantType {
    let eighth = n_layers / 8;
    let more_bits = layer < eighth || layer >= 7 * n_layers / 8 || (layer - eighth) % 3 == 2;
    match tensor {
        "output" => QuantType::Q6K,
        "v_proj" | "down_proj" if more_bits => QuantType::Q6K,
        _ => QuantType::Q4K,
    }
}

/// Device bytes of a Q4_K_M base as our kernels hold it (blocks repacked per
/// `kernels::layout`; norms in f32).
pub fn q4_k_m_base_bytes(c: &ModelConfig) -> u64 {
    let (d, f) = (c.hidden_size, c.intermediate_size);
    let (qd, kvd) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let mut bytes = 0usize;
    for l in 0..c.num_layers {
        for (name, out, inp) in [
            ("q_proj", qd, d),
            ("k_proj", kvd, d),
            ("v_proj", kvd, d),
            ("o_proj", d, qd),
            ("gate_proj", f, d),
            ("up_proj", f, d),
            ("down_proj", d, f),
        ] {
            bytes += q4_k_m_type(name, l, c.num_layers).bytes(out, inp);
        }
        bytes += 2 * 4 * d;
    }
    let v = c.vocab_size;
    if c.tie_word_embeddings {
        bytes += q4_k_m_type("output", 0, c.num_layers).bytes(v, d);
    } else {
        bytes += QuantType::Q4K.bytes(v, d) + q4_k_m_type("output", 0, c.num_layers).bytes(v, d);
    }
    (bytes + 4 * d) as u64
}

/// Published configs of models people adapt, for the sizing table.
pub fn preset(name: &str) -> Option<ModelConfig> {
    let base = |vocab, d, f, l, h, hkv, dh, tie| ModelConfig {
        arch: "llama".into(),
        vocab_size: vocab,
        hidden_size: d,
        intermediate_size: f,
        num_layers: l,
        num_heads: h,
        num_kv_heads: hkv,
        head_dim: dh,
        rms_norm_eps: 1e-5,
        rope_theta: 500000.0,
        rope_scaling: None,
        max_position_embeddings: 131072,
        tie_word_embeddings: tie,
        attention_bias: false,
    };
    Some(match name {
        "smollm2-135m" => ModelConfig {
            rope_theta: 100000.0,
            max_position_embeddings: 8192,
            ..base(49152, 576, 1536, 30, 9, 3, 64, true)
        },
        "llama-3.2-1b" => base(128256, 2048, 8192, 16, 32, 8, 64, true),
        "llama-3.2-3b" => base(128256, 3072, 8192, 28, 24, 8, 128, true),
        "llama-3.1-8b" => base(128256, 4096, 14336, 32, 32, 8, 128, false),
        _ => return None,
    })
}

pub const PRESETS: [&str; 4] = [
    "smollm2-135m",
    "llama-3.2-1b",
    "llama-3.2-3b",
    "llama-3.1-8b",
];

/// The whole plan for a Q4_K_M model kept quantized.
pub fn q4_k_m_plan(c: &ModelConfig, s: &StepShape) -> MemoryPlan {
    let targets = &crate::model::lora::TARGETS[..s.targets.min(7)];
    MemoryPlan {
        base_weights: q4_k_m_base_bytes(c),
        lora_and_optimizer: lora_and_optimizer_bytes(lora_params(c, s.rank, targets)),
        activations: activation_bytes(c, s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_8b_is_about_the_size_of_the_file() {
        // Llama-3.1-8B-Instruct-Q4_K_M.gguf is 4.92 GB (4.58 GiB) on disk.
        let c = preset("llama-3.1-8b").unwrap();
        let gib = q4_k_m_base_bytes(&c) as f64 / (1u64 << 30) as f64;
        assert!((4.4..4.8).contains(&gib), "{gib}");
    }

    #[test]
    fn lora_params_match_peft_count() {
        // PEFT reports 2,442,240 trainable parameters for SmolLM2-135M, r 8, all seven
        // (../shared/reference/peft/results.json).
        let c = preset("smollm2-135m").unwrap();
        assert_eq!(lora_params(&c, 8, &crate::model::lora::TARGETS), 2_442_240);
    }

    #[test]
    fn recomputation_keeps_only_block_inputs() {
        let c = preset("llama-3.1-8b").unwrap();
        let mut s = StepShape {
            batch: 1,
            seq_len: 512,
            labelled: 512,
            rank: 16,
            targets: 7,
            dropout: false,
            recompute: false,
            fused: false,
        };
        let full = activation_bytes(&c, &s);
        s.recompute = true;
        let rec = activation_bytes(&c, &s);
        assert!(rec * 5 < full, "{rec} vs {full}");
    }
}
