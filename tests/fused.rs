//! The CPU backend's fused ops (`kernels::cpu_ops`) against their slow twins, the composed
//! tensor ops the other devices run: outputs and input gradients (of `sum(y ⊙ r)` with a fixed
//! random r), on shapes that are not multiples of the 8-wide vector loops. Tolerance: relative
//! norm error ≤ 1e-5 (f32 rounding; the fused ops sum in a different order and use their own
//! `exp`, whose relative error is ≤ 2e-7).

mod common;

use anytune::kernels::cpu_ops;
use anytune::model::layers::{apply_rope_composed, attention_bias, rms_norm_composed, rope_tables};
use anytune::train::loss::cross_entropy_sum_composed;
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::rel_norm_err;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TOL: f64 = 1e-5;

fn values(n: usize, scale: f32, rng: &mut StdRng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn plain<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), &Device::flex())
}

fn leaf<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    plain(v, shape).autodiff().require_grad()
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Runs `f` on fresh leaves made from `inputs` and returns (y, the gradient of every input)
/// for the loss `sum(y ⊙ r)`.
fn run<const D: usize, const O: usize>(
    inputs: &[(Vec<f32>, [usize; D])],
    r: &[f32],
    f: impl Fn(Vec<Tensor<D>>) -> Tensor<O>,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let leaves: Vec<Tensor<D>> = inputs.iter().map(|(v, s)| leaf(v.clone(), *s)).collect();
    let y = f(leaves.clone());
    let dims = y.dims();
    let weight = plain(r.to_vec(), dims);
    let g = (y.clone() * weight).sum().backward();
    let grads = leaves
        .iter()
        .map(|l| host(l.grad(&g).expect("input gradient")))
        .collect();
    (host(y.inner()), grads)
}

fn compare(name: &str, fused: (Vec<f32>, Vec<Vec<f32>>), composed: (Vec<f32>, Vec<Vec<f32>>)) {
    let e = rel_norm_err(&composed.0, &fused.0);
    println!("{name}: forward rel err {e:.2e}");
    assert!(e <= TOL, "{name}: forward rel err {e:e}");
    for (i, (c, f)) in composed.1.iter().zip(&fused.1).enumerate() {
        let e = rel_norm_err(c, f);
        println!("{name}: gradient of input {i} rel err {e:.2e}");
        assert!(e <= TOL, "{name}: gradient {i} rel err {e:e}");
    }
}

#[test]
fn fused_ops_match_composed_ops_forward_and_backward() {
    let mut rng = StdRng::seed_from_u64(7);

    // RMSNorm (x and the weight both get gradients): [B, T, D] = [2, 5, 37].
    let shape = [2, 5, 37];
    let x = values(370, 2.0, &mut rng);
    let w = values(37, 1.5, &mut rng);
    let r = values(370, 1.0, &mut rng);
    let fused = {
        let wl = leaf(w.clone(), [37]);
        let xl = leaf(x.clone(), shape);
        let y = cpu_ops::rms_norm(xl.clone(), wl.clone(), 1e-5);
        let g = (y.clone() * plain(r.clone(), shape)).sum().backward();
        (
            host(y.inner()),
            vec![host(xl.grad(&g).unwrap()), host(wl.grad(&g).unwrap())],
        )
    };
    let composed = {
        let wl = leaf(w.clone(), [37]);
        let xl = leaf(x.clone(), shape);
        let y = rms_norm_composed(xl.clone(), &wl, 1e-5);
        let g = (y.clone() * plain(r.clone(), shape)).sum().backward();
        (
            host(y.inner()),
            vec![host(xl.grad(&g).unwrap()), host(wl.grad(&g).unwrap())],
        )
    };
    compare("rms_norm", fused, composed);

    // SiLU(a) ⊙ b: [2, 7, 45].
    let shape = [2, 7, 45];
    let n = 2 * 7 * 45;
    let (a, b, r) = (
        values(n, 6.0, &mut rng),
        values(n, 2.0, &mut rng),
        values(n, 1.0, &mut rng),
    );
    let inputs = [(a, shape), (b, shape)];
    compare(
        "silu_mul",
        run(&inputs, &r, |t| {
            cpu_ops::silu_mul(t[0].clone(), t[1].clone())
        }),
        run(&inputs, &r, |t| silu(t[0].clone()) * t[1].clone()),
    );

    // RoPE on [B, T, heads, Dh] = [2, 6, 3, 10] at offset 4.
    let inv_freq: Vec<f64> = (0..5)
        .map(|i| 10000f64.powf(-(2.0 * i as f64) / 10.0))
        .collect();
    let (cos, sin) = rope_tables(&inv_freq, 4, 6, &Device::flex());
    let shape = [2, 6, 3, 10];
    let x = values(360, 3.0, &mut rng);
    let r = values(360, 1.0, &mut rng);
    let inputs = [(x, shape)];
    compare(
        "rope",
        run(&inputs, &r, |t| {
            cpu_ops::rope(t[0].clone(), cos.clone(), sin.clone())
        }),
        run(&inputs, &r, |t| {
            apply_rope_composed(t[0].clone(), &cos, &sin)
        }),
    );

    // Attention softmax with the causal + padding mask: scores [B, Hkv, G*T, S] = [2, 2, 3*9, 9].
    let (b, hkv, g, t) = (2, 2, 3, 9);
    let bias = attention_bias(b, g, t, t, 0, Some(&[9, 6]), &Device::flex());
    let shape = [b, hkv, g * t, t];
    let n = b * hkv * g * t * t;
    let x = values(n, 8.0, &mut rng);
    let r = values(n, 1.0, &mut rng);
    let scale = 0.125;
    let inputs = [(x, shape)];
    compare(
        "softmax_biased",
        run(&inputs, &r, |ts| {
            cpu_ops::softmax_biased(ts[0].clone(), bias.clone(), scale)
        }),
        run(&inputs, &r, |ts| {
            softmax(ts[0].clone().mul_scalar(scale) + bias.clone(), 3)
        }),
    );

    // Cross-entropy summed over rows: logits [N, V] = [5, 1030].
    let (rows, vocab) = (5, 1030);
    let x = values(rows * vocab, 10.0, &mut rng);
    let targets: Vec<i64> = vec![0, 1029, 17, 512, 3];
    let tg = || {
        Tensor::<2, Int>::from_data(TensorData::new(targets.clone(), [rows, 1]), &Device::flex())
    };
    let inputs = [(x, [rows, vocab])];
    compare(
        "cross_entropy",
        run(&inputs, &[1.0], |ts| {
            cpu_ops::cross_entropy_sum(ts[0].clone(), tg())
        }),
        run(&inputs, &[1.0], |ts| {
            cross_entropy_sum_composed(ts[0].clone(), tg())
        }),
    );
}
