//! AdamW (Loshchilov & Hutter 2019) exactly as `torch.optim.AdamW` computes it — decoupled
//! decay `p ← p·(1 − lr·wd)`, then `p ← p − (lr / bc1)·m / (√v / √bc2 + eps)` — over the LoRA
//! tensors only (the frozen base has no state). Global-norm clipping as
//! `torch.nn.utils.clip_grad_norm_`.

use burn::tensor::Tensor;

/// Optimizer hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Moments for every trainable tensor, in a fixed order.
pub struct AdamW {
    pub cfg: AdamWConfig,
    /// Steps taken so far.
    pub step: u64,
    /// (m, v) per tensor, plain (non-autodiff) tensors.
    pub moments: Vec<(Tensor<2>, Tensor<2>)>,
}

impl AdamW {
    pub fn new(cfg: AdamWConfig, params: &[Tensor<2>]) -> Self {
        let moments = params
            .iter()
            .map(|p| {
                let z = Tensor::<2>::zeros(p.dims(), &p.device().without_autodiff());
                (z.clone(), z)
            })
            .collect();
        AdamW {
            cfg,
            step: 0,
            moments,
        }
    }

    /// One update; returns the new parameter values (plain tensors; the caller makes them
    /// trainable leaves again).
    pub fn update(
        &mut self,
        params: &[Tensor<2>],
        grads: Vec<Tensor<2>>,
        lr: f64,
    ) -> Vec<Tensor<2>> {
        self.step += 1;
        let c = self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        let mut out = Vec::with_capacity(params.len());
        for ((p, g), (m, v)) in params.iter().zip(grads).zip(self.moments.iter_mut()) {
            let p = p.clone().inner();
            *m = m.clone().mul_scalar(c.beta1) + g.clone().mul_scalar(1.0 - c.beta1);
            *v = v.clone().mul_scalar(c.beta2) + (g.clone() * g).mul_scalar(1.0 - c.beta2);
            let p = if c.weight_decay > 0.0 {
                p.mul_scalar(1.0 - lr * c.weight_decay)
            } else {
                p
            };
            let denom = v.clone().sqrt().div_scalar(bc2.sqrt()).add_scalar(c.eps);
            out.push(p - (m.clone() / denom).mul_scalar(lr / bc1));
        }
        out
    }
}

impl AdamW {
    /// Host copies of the moments (for checkpoints).
    pub async fn moments_host(&self) -> crate::Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let mut out = Vec::with_capacity(self.moments.len());
        for (m, v) in &self.moments {
            out.push((
                crate::util::read_f32(m.clone()).await?,
                crate::util::read_f32(v.clone()).await?,
            ));
        }
        Ok(out)
    }

    /// Restores moments saved by `moments_host` (same tensor order and sizes).
    pub fn restore_moments(&mut self, saved: &[(Vec<f32>, Vec<f32>)]) -> crate::Result<()> {
        if saved.len() != self.moments.len() {
            return Err(crate::Error::tensor(
                "optimizer",
                format!(
                    "{} moment pairs saved, {} expected",
                    saved.len(),
                    self.moments.len()
                ),
            ));
        }
        for ((m, v), (sm, sv)) in self.moments.iter_mut().zip(saved) {
            let dims = m.dims();
            if sm.len() != dims[0] * dims[1] || sv.len() != sm.len() {
                return Err(crate::Error::tensor(
                    "optimizer",
                    "moment size does not match the adapter",
                ));
            }
            let dev = m.device();
            *m = Tensor::from_data(burn::tensor::TensorData::new(sm.clone(), dims), &dev);
            *v = Tensor::from_data(burn::tensor::TensorData::new(sv.clone(), dims), &dev);
        }
        Ok(())
    }
}

/// Global L2 norm of all gradients (one host read).
pub async fn global_norm(grads: &[Tensor<2>]) -> f64 {
    let Some(first) = grads.first() else {
        return 0.0;
    };
    let mut total = Tensor::<1>::zeros([1], &first.device());
    for g in grads {
        total = total + (g.clone() * g.clone()).sum();
    }
    let v = crate::util::read_f32(total).await.unwrap_or_default();
    v.first().map_or(0.0, |x| (*x as f64).sqrt())
}

/// Scales gradients so their global norm is at most `max_norm` (0 = off); returns the norm
/// before clipping.
pub async fn clip(grads: Vec<Tensor<2>>, max_norm: f64) -> (Vec<Tensor<2>>, f64) {
    let norm = global_norm(&grads).await;
    if max_norm > 0.0 && norm > max_norm {
        let s = max_norm / (norm + 1e-6);
        (grads.into_iter().map(|g| g.mul_scalar(s)).collect(), norm)
    } else {
        (grads, norm)
    }
}
