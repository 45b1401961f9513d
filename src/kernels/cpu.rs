//! Row kernels for the CPU backend's fused ops (`cpu_ops.rs`): plain loops over contiguous f32
//! rows that LLVM auto-vectorizes, each compiled twice — for AVX2 + FMA, picked at run time,
//! and for the baseline target. Profiling the training step on 2 cores showed half the wall
//! time in burn's one-op-at-a-time element-wise chain (softmax, RMSNorm, RoPE, SiLU, the loss),
//! each op a full pass that allocates, and glibc's scalar `expf` (with its errno slow path for
//! the masked -1e30 attention entries). These kernels do each op in one or two passes with a
//! vectorizable `exp`. Their slow twins are the composed tensor ops in `model::layers` and
//! `train::loss`; tests/fused.rs compares both, forward and backward.

/// Entries of an additive mask at or below this are masked out (the model uses -1e30).
pub const MASKED: f32 = -1e29;

/// Defines `pub fn $name(args)`: the body compiled with AVX2 + FMA when the CPU has them
/// (detected once, cached by std), else for the baseline target.
macro_rules! simd_fn {
    ($(#[$m:meta])* pub fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn inner($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    inner($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: both target features were detected on this CPU just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            inner($($arg),*)
        }
    };
}

/// eˣ in f32 arithmetic that vectorizes (Cephes `expf`: x = n·ln2 + r, a degree-6 polynomial
/// for eʳ, 2ⁿ built from exponent bits); relative error ≤ 2e-7 against f64 `exp` (tested).
/// Exactly 0 below -87 (masked entries), saturates at e⁸⁸.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer in plain arithmetic.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let n = (xc * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let two_n = f32::from_bits(((n as i32 + 127) << 23) as u32);
    if x < -87.0 { 0.0 } else { e * two_n }
}

/// Σ a·b with eight partial sums (vectorizes; the order differs from a flat sum).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let tail: f32 = ta.iter().zip(tb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

simd_fn! {
    /// One row: `y = softmax(x·scale + bias)`; entries with bias ≤ `MASKED` are exactly 0.
    pub fn softmax_row(x: &[f32], bias: &[f32], y: &mut [f32], scale: f32) {
        let mut m = f32::NEG_INFINITY;
        for ((yi, &xi), &bi) in y.iter_mut().zip(x).zip(bias) {
            let v = xi * scale + bi;
            *yi = v;
            m = if v > m { v } else { m };
        }
        let mut sum = 0.0f32;
        for yi in y.iter_mut() {
            let e = exp(*yi - m);
            *yi = e;
            sum += e;
        }
        let inv = 1.0 / sum;
        for yi in y.iter_mut() {
            *yi *= inv;
        }
    }
}

simd_fn! {
    /// One row of the softmax backward: `dx = scale · y ⊙ (g − Σ g⊙y)`.
    pub fn softmax_backward_row(y: &[f32], g: &[f32], dx: &mut [f32], scale: f32) {
        let s = dot(y, g);
        for ((d, &yi), &gi) in dx.iter_mut().zip(y).zip(g) {
            *d = scale * yi * (gi - s);
        }
    }
}

simd_fn! {
    /// One row of RMSNorm: `y = x / sqrt(mean(x²) + eps) ⊙ w`.
    pub fn rms_norm_row(x: &[f32], w: &[f32], y: &mut [f32], eps: f32) {
        let inv = 1.0 / (dot(x, x) / x.len() as f32 + eps).sqrt();
        for ((yi, &xi), &wi) in y.iter_mut().zip(x).zip(w) {
            *yi = xi * inv * wi;
        }
    }
}

simd_fn! {
    /// One row of RMSNorm's input gradient: with u = g⊙w and r = 1/sqrt(mean(x²) + eps),
    /// `dx = r·u − x · r³ · (Σ u⊙x) / D`.
    pub fn rms_norm_backward_row(x: &[f32], w: &[f32], g: &[f32], dx: &mut [f32], eps: f32) {
        let d = x.len() as f32;
        let r = 1.0 / (dot(x, x) / d + eps).sqrt();
        let mut acc = [0.0f32; 8];
        let n8 = x.len() / 8 * 8;
        for i in (0..n8).step_by(8) {
            for j in 0..8 {
                acc[j] += g[i + j] * w[i + j] * x[i + j];
            }
        }
        let mut s: f32 = acc.iter().sum();
        for i in n8..x.len() {
            s += g[i] * w[i] * x[i];
        }
        let c = r * r * r * s / d;
        for i in 0..x.len() {
            dx[i] = r * g[i] * w[i] - x[i] * c;
        }
    }
}

simd_fn! {
    /// `y = silu(a) ⊙ b` with silu(a) = a·σ(a).
    pub fn silu_mul(a: &[f32], b: &[f32], y: &mut [f32]) {
        for ((yi, &ai), &bi) in y.iter_mut().zip(a).zip(b) {
            let s = 1.0 / (1.0 + exp(-ai));
            *yi = ai * s * bi;
        }
    }
}

simd_fn! {
    /// Gradients of `silu(a) ⊙ b`: `da = g·b·σ(a)·(1 + a·(1 − σ(a)))`, `db = g·silu(a)`.
    pub fn silu_mul_backward(a: &[f32], b: &[f32], g: &[f32], da: &mut [f32], db: &mut [f32]) {
        for i in 0..a.len() {
            let s = 1.0 / (1.0 + exp(-a[i]));
            da[i] = g[i] * b[i] * s * (1.0 + a[i] * (1.0 - s));
            db[i] = g[i] * a[i] * s;
        }
    }
}

simd_fn! {
    /// One head row of rotary embedding, "rotate half" convention:
    /// `y = x ⊙ cos + [−x₂, x₁] ⊙ sin` (the backward is the same with −sin).
    pub fn rope_row(x: &[f32], cos: &[f32], sin: &[f32], y: &mut [f32]) {
        let h = x.len() / 2;
        let (x1, x2) = x.split_at(h);
        let (y1, y2) = y.split_at_mut(h);
        for i in 0..h {
            y1[i] = x1[i] * cos[i] - x2[i] * sin[i];
            y2[i] = x2[i] * cos[h + i] + x1[i] * sin[h + i];
        }
    }
}

simd_fn! {
    /// One row of cross-entropy: returns (−log softmax(x)[target], logsumexp(x)). The partition
    /// sum is accumulated in f64 (a flat f32 sum over a 49k vocabulary loses the tail's mass).
    pub fn cross_entropy_row(x: &[f32], target: usize) -> (f32, f32) {
        let mut m = f32::NEG_INFINITY;
        for &v in x {
            m = if v > m { v } else { m };
        }
        let mut acc = [0.0f64; 4];
        let c = x.chunks_exact(4);
        let tail: f64 = c.remainder().iter().map(|&v| exp(v - m) as f64).sum();
        for q in c {
            for j in 0..4 {
                acc[j] += exp(q[j] - m) as f64;
            }
        }
        let lse = m + (acc.iter().sum::<f64>() + tail).ln() as f32;
        (lse - x[target], lse)
    }
}

simd_fn! {
    /// One row of the cross-entropy gradient: `dx = g · (softmax(x) − onehot(target))`.
    pub fn cross_entropy_backward_row(x: &[f32], lse: f32, target: usize, g: f32, dx: &mut [f32]) {
        for (d, &v) in dx.iter_mut().zip(x) {
            *d = g * exp(v - lse);
        }
        dx[target] -= g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_f64_exp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.001_7;
        }
        assert!(worst < 2e-7, "worst relative error {worst:e}");
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(-87.5), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn rows_match_scalar_formulas() {
        let x: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 101) as f32 / 13.0 - 3.0)
            .collect();
        let mut bias = vec![0.0f32; 37];
        bias[5] = -1e30;
        let mut y = vec![0.0; 37];
        softmax_row(&x, &bias, &mut y, 0.5);
        let m = x.iter().map(|v| v * 0.5).fold(f32::MIN, f32::max) as f64;
        let z: f64 = (0..37)
            .filter(|&i| i != 5)
            .map(|i| ((x[i] * 0.5) as f64 - m).exp())
            .sum();
        for i in 0..37 {
            let want = if i == 5 {
                0.0
            } else {
                ((x[i] * 0.5) as f64 - m).exp() / z
            };
            assert!((y[i] as f64 - want).abs() < 1e-6, "softmax {i}");
        }
        let (loss, lse) = cross_entropy_row(&x, 3);
        let want_lse = (x.iter().map(|&v| (v as f64).exp()).sum::<f64>()).ln();
        assert!((lse as f64 - want_lse).abs() < 1e-5);
        assert!((loss as f64 - (want_lse - x[3] as f64)).abs() < 1e-5);
    }
}
