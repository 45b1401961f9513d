//! The WGSL dequant-matmul kernels on wgpu (lavapipe in CI) against their reference twin — the
//! CPU dequantizer (`gguf::quant`, mirroring ggml) and a plain matmul on the CPU backend — for
//! every kernel type, forward (`x · Wᵀ`), input gradient through autodiff (`dy · W`) and the
//! embedding gather, on shapes that are not multiples of the 16 x 16 tile (M = 1 and 67,
//! N = 37, K = 96 for the 32-weight types and 512 for the K-quants) and with the weight split
//! into several chunks by a tiny binding limit.

mod common;

use anytune::gguf::quant::dequantize;
use anytune::kernels::layout::repack;
use anytune::kernels::{QuantType, QuantWeight};
use burn::tensor::{Device, Int, Tensor, TensorData};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Random ggml blocks for a [rows, cols] matrix: random quants, scales in a realistic range.
fn random_blocks(t: QuantType, rows: usize, cols: usize, rng: &mut StdRng) -> Vec<u8> {
    let bb = t.ggml().block_bytes();
    let n_blocks = rows * cols / t.block_elems();
    let mut raw: Vec<u8> = (0..n_blocks * bb).map(|_| rng.random()).collect();
    let put = |raw: &mut [u8], at: usize, v: f32| {
        raw[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes())
    };
    for b in 0..n_blocks {
        let o = b * bb;
        let d = rng.random_range(0.002f32..0.02);
        match t {
            QuantType::Q8_0 | QuantType::Q4_0 => put(&mut raw, o, d),
            QuantType::Q4_1 => {
                put(&mut raw, o, d);
                put(&mut raw, o + 2, rng.random_range(-0.1f32..0.1));
            }
            QuantType::Q4K => {
                put(&mut raw, o, d / 10.0);
                put(&mut raw, o + 2, d / 10.0);
            }
            QuantType::Q6K => put(&mut raw, o + 208, d / 10.0),
        }
    }
    raw
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let m = b.iter().map(|x| x.abs()).fold(0f32, f32::max);
    (d, m)
}

fn randn(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1f32..1.0)).collect()
}

/// Forward and input gradient for one type and shape; returns the worst relative error.
fn check_type(
    gpu: &Device,
    t: QuantType,
    m: usize,
    rows: usize,
    cols: usize,
    max_binding: usize,
) -> f32 {
    let mut rng = StdRng::seed_from_u64(t.code() as u64 * 1000 + m as u64);
    let raw = random_blocks(t, rows, cols, &mut rng);
    let dense = dequantize(t.ggml(), &raw, rows * cols, "w").unwrap();
    let words = repack(t, &raw, "w").unwrap();
    let qw = QuantWeight::upload(t, rows, cols, &words, max_binding, gpu);
    let xs = randn(&mut rng, m * cols);
    let gs = randn(&mut rng, m * rows);

    // Kernel: y = x · Wᵀ with x an autodiff leaf, then dL/dx for L = sum(y * g) = g · W.
    let ad = gpu.clone().autodiff();
    let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [m, cols]), &ad).require_grad();
    let g = Tensor::<2>::from_data(TensorData::new(gs.clone(), [m, rows]), &ad);
    let y = qw.forward(x.clone());
    let grads = (y.clone() * g).sum().backward();
    let dx = x.grad(&grads).unwrap();

    // Reference twin on the CPU backend: dequantized W, plain matmuls.
    let cpu = Device::flex();
    let w = Tensor::<2>::from_data(TensorData::new(dense, [rows, cols]), &cpu);
    let xr = Tensor::<2>::from_data(TensorData::new(xs, [m, cols]), &cpu);
    let gr = Tensor::<2>::from_data(TensorData::new(gs, [m, rows]), &cpu);
    let y_ref = host(xr.matmul(w.clone().transpose()));
    let dx_ref = host(gr.matmul(w));

    let (dy, my) = max_abs_diff(&host(y.inner()), &y_ref);
    let (dd, md) = max_abs_diff(&host(dx), &dx_ref);
    eprintln!(
        "{t:?} M={m} N={rows} K={cols} chunks={}: forward max|err| {dy:.2e} (max|y| {my:.2}), \
         input-grad max|err| {dd:.2e} (max|dx| {md:.2})",
        qw.chunks.len()
    );
    // Stated tolerance: max abs error ≤ 1e-4 × max(1, max|reference|) (f32 accumulation order).
    assert!(
        dy <= 1e-4 * my.max(1.0),
        "{t:?} forward: {dy} vs scale {my}"
    );
    assert!(
        dd <= 1e-4 * md.max(1.0),
        "{t:?} input grad: {dd} vs scale {md}"
    );
    (dy / my.max(1.0)).max(dd / md.max(1.0))
}

#[test]
fn quantized_matmul_forward_and_input_gradient_match_the_reference_twin() {
    let Some(gpu) = common::wgpu() else { return };
    eprintln!("device: {}", gpu.description);
    for t in QuantType::ALL {
        let cols = if t.block_elems() == 256 { 512 } else { 96 };
        for m in [1, 67] {
            check_type(&gpu.device, t, m, 37, cols, usize::MAX);
        }
        // The same with a binding limit of a few rows: several chunks, and M split too.
        let row_bytes = t.bytes(1, cols);
        check_type(&gpu.device, t, 67, 37, cols, 5 * row_bytes);
    }
}

#[test]
fn quantized_embedding_gather_matches_the_reference_twin() {
    let Some(gpu) = common::wgpu() else { return };
    for t in QuantType::ALL {
        let (rows, cols) = (41, if t.block_elems() == 256 { 256 } else { 64 });
        let mut rng = StdRng::seed_from_u64(7 + t.code() as u64);
        let raw = random_blocks(t, rows, cols, &mut rng);
        let dense = dequantize(t.ggml(), &raw, rows * cols, "e").unwrap();
        let words = repack(t, &raw, "e").unwrap();
        let ids: Vec<u32> = vec![0, 40, 7, 7, 13, 39, 1];
        for max_binding in [usize::MAX, 3 * t.bytes(1, cols)] {
            let qw = QuantWeight::upload(t, rows, cols, &words, max_binding, &gpu.device);
            let idt = Tensor::<1, Int>::from_data(
                TensorData::new(
                    ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                    [ids.len()],
                ),
                &gpu.device,
            );
            let got = host(qw.gather(idt));
            let want: Vec<f32> = ids
                .iter()
                .flat_map(|&i| dense[i as usize * cols..(i as usize + 1) * cols].to_vec())
                .collect();
            let (d, _) = max_abs_diff(&got, &want);
            eprintln!("{t:?} gather, {} chunks: max|err| {d:.1e}", qw.chunks.len());
            assert_eq!(d, 0.0, "{t:?}: gather must be exact");
        }
    }
}
