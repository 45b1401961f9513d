//! LoRA (Hu et al. 2021, arXiv:2106.09685) as PEFT defines it:
//! `y = x·Wᵀ + s·(dropout(x)·Aᵀ)·Bᵀ`, s = α/r (or α/√r with rsLoRA), computed as two thin
//! matmuls — `W + s·BA` is never materialized (burn's `apply_lora` does; we don't use it).
//! A is Kaiming-uniform(a=√5) from a seeded RNG, B is zero, so training starts at the base
//! model. Tensors keep PEFT's layout: A [R, in], B [out, R].

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The seven projections LoRA can target, by their PEFT / HF module names.
pub const TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// One adapter on one linear layer.
#[derive(Clone)]
pub struct LoraAdapter {
    /// [R, in], trainable
    pub a: Tensor<2>,
    /// [out, R], trainable
    pub b: Tensor<2>,
    pub scale: f64,
    /// Dropout probability on the adapter's input, applied while `training`.
    pub dropout: f64,
    pub training: bool,
}

impl LoraAdapter {
    /// PEFT's scale: α/r, or α/√r for rsLoRA.
    pub fn scale(rank: usize, alpha: f64, rslora: bool) -> f64 {
        if rslora {
            alpha / (rank as f64).sqrt()
        } else {
            alpha / rank as f64
        }
    }

    /// Fresh adapter: A ~ U(-1/√in, 1/√in) (Kaiming-uniform with a=√5, PyTorch's
    /// `nn.Linear` default that PEFT uses), B = 0. Host RNG so every backend starts equal.
    pub fn init(
        inp: usize,
        out: usize,
        rank: usize,
        scale: f64,
        dropout: f64,
        rng: &mut StdRng,
        device: &Device,
    ) -> Self {
        let bound = 1.0 / (inp as f64).sqrt();
        let a: Vec<f32> = (0..rank * inp)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        Self::from_host(
            a,
            vec![0.0; out * rank],
            inp,
            out,
            rank,
            scale,
            dropout,
            device,
        )
    }

    /// From host values in PEFT layout; the tensors are autodiff leaves that require grad.
    #[allow(clippy::too_many_arguments)]
    pub fn from_host(
        a: Vec<f32>,
        b: Vec<f32>,
        inp: usize,
        out: usize,
        rank: usize,
        scale: f64,
        dropout: f64,
        device: &Device,
    ) -> Self {
        LoraAdapter {
            a: trainable(a, [rank, inp], device),
            b: trainable(b, [out, rank], device),
            scale,
            dropout,
            training: false,
        }
    }

    /// The adapter's contribution `s·(dropout(x)·Aᵀ)·Bᵀ`.
    ///
    /// # Shapes
    /// x [N, in] -> [N, out]
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = if self.training && self.dropout > 0.0 {
            // Drawn on the plain device (one RNG whether or not x is tracked), so a block
            // recomputed from the same seed draws the same mask.
            let keep = Tensor::<2>::random(
                x.dims(),
                Distribution::Bernoulli(1.0 - self.dropout),
                &x.device().without_autodiff(),
            );
            x * keep.div_scalar(1.0 - self.dropout)
        } else {
            x
        };
        // The scale on the thin [N, R] product, not on the [N, out] one.
        x.matmul(self.a.clone().transpose())
            .mul_scalar(self.scale) // [N, R]
            .matmul(self.b.clone().transpose()) // [N, out]
    }
}

/// A trainable leaf tensor from host values.
pub fn trainable(v: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(
        TensorData::new(v, shape),
        &device.clone().without_autodiff(),
    )
    .autodiff()
    .require_grad()
}

/// Which layers get adapters and how.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub rslora: bool,
    /// Subset of `TARGETS`.
    pub targets: Vec<String>,
    pub seed: u64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            rslora: false,
            targets: TARGETS.iter().map(|s| s.to_string()).collect(),
            seed: 42,
        }
    }
}

/// A seeded RNG for adapter initialisation.
pub fn init_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}
