//! Llama building blocks as plain functions over tensors: linear, RMSNorm, RoPE, grouped-query
//! attention with a causal mask, SwiGLU. Shapes use B, T (new tokens), S (keys incl. cache),
//! D, H, Hkv, G = H / Hkv, Dh, V.
//!
//! On the CPU backend RMSNorm, RoPE, the attention softmax and SiLU·up run as fused ops
//! (`kernels::cpu_ops`); elsewhere (and as their tested twins) as the composed tensor ops here.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Tensor, TensorData};

use super::lora::LoraAdapter;
use crate::kernels::{QuantWeight, cpu_ops};

/// A frozen base weight: dense f32, or GGUF blocks read by our kernels (`--base-weights keep`).
#[derive(Clone)]
pub enum BaseWeight {
    /// Wᵀ: [in, out]
    Dense(Tensor<2>),
    /// W: [out, in] as quantized blocks on the device.
    Quant(QuantWeight),
}

impl BaseWeight {
    /// [in, out]
    pub fn dims(&self) -> [usize; 2] {
        match self {
            BaseWeight::Dense(w_t) => w_t.dims(),
            BaseWeight::Quant(q) => [q.cols, q.rows],
        }
    }

    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        match self {
            BaseWeight::Dense(w_t) => 4 * w_t.dims().iter().product::<usize>(),
            BaseWeight::Quant(q) => q.bytes(),
        }
    }

    /// # Shapes
    /// x [N, in] -> [N, out]
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            BaseWeight::Dense(w_t) => x.matmul(w_t.clone()),
            BaseWeight::Quant(q) => q.forward(x),
        }
    }
}

/// A frozen linear layer with an optional LoRA adapter.
#[derive(Clone)]
pub struct Linear {
    pub weight: BaseWeight,
    /// [out]
    pub bias: Option<Tensor<1>>,
    pub lora: Option<LoraAdapter>,
}

impl Linear {
    /// [in, out]
    pub fn dims(&self) -> [usize; 2] {
        self.weight.dims()
    }

    /// # Shapes
    /// x [B, T, in] -> [B, T, out]
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, i] = x.dims();
        let [_, o] = self.dims();
        let x = x.reshape([b * t, i]);
        let y = self.weight.forward(x.clone()); // [B*T, out]
        let y = match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze_dim::<2>(0),
            None => y,
        };
        let y = match &self.lora {
            Some(l) => y + l.forward(x),
            None => y,
        };
        y.reshape([b, t, o])
    }
}

/// RMSNorm (Zhang & Sennrich 2019) as Llama uses it: `x / sqrt(mean(x²) + eps) * w`.
///
/// # Shapes
/// x [B, T, D], w [D] -> [B, T, D]
pub fn rms_norm(x: Tensor<3>, w: &Tensor<1>, eps: f64) -> Tensor<3> {
    if cpu_ops::available(&x.device()) {
        return cpu_ops::rms_norm(x, w.clone(), eps);
    }
    rms_norm_composed(x, w, eps)
}

/// `rms_norm` as composed tensor ops (every device but the CPU, and the fused op's twin).
pub fn rms_norm_composed(x: Tensor<3>, w: &Tensor<1>, eps: f64) -> Tensor<3> {
    let ms = (x.clone() * x.clone()).mean_dim(2); // [B, T, 1]
    let inv = ms.add_scalar(eps).sqrt().recip();
    x * inv * w.clone().unsqueeze_dim::<2>(0).unsqueeze_dim::<3>(0)
}

/// cos/sin tables for positions `offset..offset + t`, HF layout (the half-dim frequencies
/// repeated twice).
///
/// # Shapes
/// -> (cos [1, T, 1, Dh], sin [1, T, 1, Dh])
pub fn rope_tables(
    inv_freq: &[f64],
    offset: usize,
    t: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let dh = inv_freq.len() * 2;
    let mut cos = Vec::with_capacity(t * dh);
    let mut sin = Vec::with_capacity(t * dh);
    for p in offset..offset + t {
        for _ in 0..2 {
            for f in inv_freq {
                // f32 angle like transformers (inv_freq and positions are f32 there).
                let angle = (p as f32) * (*f as f32);
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
    }
    let mk = |v: Vec<f32>| {
        Tensor::<2>::from_data(TensorData::new(v, [t, dh]), device).reshape([1, t, 1, dh])
    };
    (mk(cos), mk(sin))
}

/// Rotary embedding, HF "rotate half" convention: `x·cos + rotate_half(x)·sin`. Applied in
/// the projection's own layout (heads not yet moved before T), where x is contiguous.
///
/// # Shapes
/// x [B, T, heads, Dh], cos/sin [1, T, 1, Dh] -> [B, T, heads, Dh]
pub fn apply_rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    if cpu_ops::available(&x.device()) {
        return cpu_ops::rope(x, cos.clone(), sin.clone());
    }
    apply_rope_composed(x, cos, sin)
}

/// `apply_rope` as composed tensor ops.
pub fn apply_rope_composed(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let half = x.dims()[3] / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

/// Additive attention bias: 0 where query `t` (at absolute position `offset + t`) may see key
/// `s`, a large negative number where it may not (future keys, or keys past `valid[b]` when
/// padding lengths are given). Rows are repeated for the G query heads sharing a KV head.
///
/// # Shapes
/// -> [B, 1, G*T, S]
pub fn attention_bias(
    b: usize,
    g: usize,
    t: usize,
    s: usize,
    offset: usize,
    valid: Option<&[usize]>,
    device: &Device,
) -> Tensor<4> {
    const MASKED: f32 = -1e30;
    let mut v = Vec::with_capacity(b * g * t * s);
    for bi in 0..b {
        let limit = valid.map_or(s, |l| l[bi]);
        for _ in 0..g {
            for ti in 0..t {
                for si in 0..s {
                    v.push(if si > offset + ti || si >= limit {
                        MASKED
                    } else {
                        0.0
                    });
                }
            }
        }
    }
    Tensor::<4>::from_data(TensorData::new(v, [b, 1, g * t, s]), device)
}

/// Grouped-query attention core: queries of the G heads that share a KV head are stacked so
/// K and V are never repeated.
///
/// # Shapes
/// q [B, H, T, Dh], k/v [B, Hkv, S, Dh], bias [B, 1, G*T, S] or none -> [B, T, H*Dh]
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Option<Tensor<4>>) -> Tensor<3> {
    let [b, h, t, dh] = q.dims();
    let hkv = k.dims()[1];
    let g = h / hkv;
    let scale = 1.0 / (dh as f64).sqrt();
    let q = q.reshape([b, hkv, g * t, dh]); // [B, Hkv, G*T, Dh]
    let scores = q.matmul(k.swap_dims(2, 3)); // [B, Hkv, G*T, S]
    let probs = match bias {
        Some(bias) if cpu_ops::available(&scores.device()) => {
            cpu_ops::softmax_biased(scores, bias, scale)
        }
        Some(bias) => softmax(scores.mul_scalar(scale) + bias, 3),
        None => softmax(scores.mul_scalar(scale), 3),
    };
    let out = probs.matmul(v); // [B, Hkv, G*T, Dh]
    out.reshape([b, h, t, dh])
        .swap_dims(1, 2)
        .reshape([b, t, h * dh])
}

/// SwiGLU MLP: `down(silu(gate(x)) * up(x))`.
///
/// # Shapes
/// x [B, T, D] -> [B, T, D]
pub fn swiglu(x: Tensor<3>, gate: &Linear, up: &Linear, down: &Linear) -> Tensor<3> {
    let (a, u) = (gate.forward(x.clone()), up.forward(x));
    if cpu_ops::available(&a.device()) {
        return down.forward(cpu_ops::silu_mul(a, u));
    }
    down.forward(silu(a) * u)
}
