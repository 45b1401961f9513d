//! Fused training ops for the CPU backend (burn flex) as a backend extension, with autodiff
//! rules whose backward is one fused pass too: biased softmax (attention), RMSNorm, RoPE,
//! SiLU·up (SwiGLU) and cross-entropy. Each replaces a chain of burn element-wise ops that each
//! allocate, make a pass over memory and keep their inputs for the backward (see `cpu.rs` for
//! the profile). Rows are split over the cores with rayon.
//!
//! The model calls these only on the CPU device (`available`); GPU devices keep the composed
//! tensor ops, which burn's fusion already merges into few kernels there. The composed ops are
//! the slow twins (tests/fused.rs).

// In the browser build no backend implements these (the Flex arm is compiled out and
// `available` is false), so the generated dispatch leaves the arguments unused there.
#![cfg_attr(target_arch = "wasm32", allow(unused_variables))]

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{AutodiffBackend, Backend, Dispatch, TensorMetadata, backend_extension};

use super::autodiff::unary_op;
use burn::tensor::{Int, Shape, Tensor};

#[backend_extension(Flex: cfg(not(target_arch = "wasm32")), Autodiff)]
pub trait CpuFusedOps: Backend {
    /// `softmax(x·scale + bias)` over the last dim; x [B, H, R, S], bias [B, 1, R, S] (a
    /// constant, broadcast over H).
    fn softmax_biased(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;
    /// `dx = scale · y ⊙ (g − Σ g⊙y)` over the last dim.
    fn softmax_backward(
        y: FloatTensor<Self>,
        g: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;
    /// RMSNorm over the last dim; x [.., D], w [D].
    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;
    /// RMSNorm's input gradient.
    fn rms_norm_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        g: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
    /// `silu(a) ⊙ b`, same shapes.
    fn silu_mul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
    /// (da, db) of `silu(a) ⊙ b`.
    fn silu_mul_backward(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        g: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// Rotary embedding: x [B, T, heads, Dh], cos/sin [T, Dh] (any shape with T·Dh elements).
    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// logits [N, V], targets [N, 1] -> (−log softmax[target] [N, 1], logsumexp [N, 1]).
    fn cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// `dlogits = g · (softmax(logits) − onehot(targets))`, g [N, 1].
    fn cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        lse: FloatTensor<Self>,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// Whether `device` runs these ops (the CPU backend natively).
pub fn available(device: &burn::tensor::Device) -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    {
        matches!(
            device.clone().without_autodiff().as_dispatch(),
            burn::backend::DispatchDevice::Flex(_)
        )
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = device;
        false
    }
}

/// # Shapes
/// x [B, H, R, S], bias [B, 1, R, S] -> [B, H, R, S]
pub fn softmax_biased(x: Tensor<4>, bias: Tensor<4>, scale: f64) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as CpuFusedOps>::softmax_biased(
        x.into_dispatch(),
        bias.into_dispatch(),
        scale,
    ))
}

/// # Shapes
/// x [B, T, D], w [D] -> [B, T, D]
pub fn rms_norm(x: Tensor<3>, w: Tensor<1>, eps: f64) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as CpuFusedOps>::rms_norm(
        x.into_dispatch(),
        w.into_dispatch(),
        eps,
    ))
}

/// # Shapes
/// a, b [..] -> [..]
pub fn silu_mul(a: Tensor<3>, b: Tensor<3>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as CpuFusedOps>::silu_mul(
        a.into_dispatch(),
        b.into_dispatch(),
    ))
}

/// # Shapes
/// x [B, T, heads, Dh], cos/sin with T·Dh elements -> [B, T, heads, Dh]
pub fn rope(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as CpuFusedOps>::rope(
        x.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
    ))
}

/// Σ over rows of −log softmax(logits)[target].
///
/// # Shapes
/// logits [N, V], targets [N, 1] -> [1]
pub fn cross_entropy_sum(logits: Tensor<2>, targets: Tensor<2, Int>) -> Tensor<1> {
    let (loss, _lse) =
        <Dispatch as CpuFusedOps>::cross_entropy(logits.into_dispatch(), targets.into_dispatch());
    Tensor::<2>::from_dispatch(loss).sum()
}

impl<B: Backend + CpuFusedOps, C: CheckpointStrategy> CpuFusedOps for Autodiff<B, C> {
    fn softmax_biased(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        // The mask is data, never trained: a constant here.
        let bias = bias.into_primitive();
        unary_op::<B, C, _>(
            x,
            |x| {
                let y = B::softmax_biased(x, bias, scale);
                (y.clone(), (y, scale))
            },
            |(y, scale), g| B::softmax_backward(y, g, scale),
        )
    }

    fn softmax_backward(
        y: FloatTensor<Self>,
        g: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        // Second derivatives are never taken: the gradient ops are plain values.
        Self::from_inner(B::softmax_backward(
            y.into_primitive(),
            g.into_primitive(),
            scale,
        ))
    }

    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct RmsNormBackward;
        impl<B: Backend + CpuFusedOps> Backward<B, 2> for RmsNormBackward {
            type State = (FloatTensor<B>, FloatTensor<B>, f64);
            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [node_x, node_w] = ops.parents;
                let g = grads.consume::<B>(&ops.node);
                let (x, w, eps) = ops.state;
                if let Some(node) = node_w {
                    // dw = Σ over rows of g ⊙ x̂ (x̂ = the norm with unit weight). Our trainer keeps
                    // the norms frozen; this is here so the op is correct for any caller.
                    let d = w.shape().num_elements();
                    let unit = B::float_ones(w.shape(), &w.device(), w.dtype().into());
                    let xhat = B::rms_norm(x.clone(), unit, eps);
                    let rows = g.shape().num_elements() / d;
                    let gw = B::float_reshape(B::float_mul(g.clone(), xhat), Shape::new([rows, d]));
                    let dw = B::float_reshape(B::float_sum_dim(gw, 0), Shape::new([d]));
                    grads.register::<B>(node.id, dw);
                }
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, B::rms_norm_backward(x, w, g, eps));
                }
            }
        }
        match RmsNormBackward
            .prepare::<C>([x.node(), w.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, w) = (x.into_primitive(), w.into_primitive());
                let y = B::rms_norm(x.clone(), w.clone(), eps);
                prep.finish((x, w, eps), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::rms_norm(x.into_primitive(), w.into_primitive(), eps))
            }
        }
    }

    fn rms_norm_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        g: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::rms_norm_backward(
            x.into_primitive(),
            w.into_primitive(),
            g.into_primitive(),
            eps,
        ))
    }

    fn silu_mul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SiluMulBackward;
        impl<B: Backend + CpuFusedOps> Backward<B, 2> for SiluMulBackward {
            type State = (FloatTensor<B>, FloatTensor<B>);
            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [node_a, node_b] = ops.parents;
                let g = grads.consume::<B>(&ops.node);
                let (a, b) = ops.state;
                let (da, db) = B::silu_mul_backward(a, b, g);
                if let Some(node) = node_a {
                    grads.register::<B>(node.id, da);
                }
                if let Some(node) = node_b {
                    grads.register::<B>(node.id, db);
                }
            }
        }
        match SiluMulBackward
            .prepare::<C>([a.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (a, b) = (a.into_primitive(), b.into_primitive());
                let y = B::silu_mul(a.clone(), b.clone());
                prep.finish((a, b), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::silu_mul(a.into_primitive(), b.into_primitive()))
            }
        }
    }

    fn silu_mul_backward(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        g: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (da, db) =
            B::silu_mul_backward(a.into_primitive(), b.into_primitive(), g.into_primitive());
        (Self::from_inner(da), Self::from_inner(db))
    }

    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // The tables are constants of the positions. The rotation's transpose is the rotation
        // by −θ: the backward is the same op with −sin.
        let (cos, sin) = (cos.into_primitive(), sin.into_primitive());
        unary_op::<B, C, _>(
            x,
            |x| (B::rope(x, cos.clone(), sin.clone()), (cos, sin)),
            |(cos, sin), g| B::rope(g, cos, B::float_neg(sin)),
        )
    }

    fn cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let mut lse_out = None;
        let loss = unary_op::<B, C, _>(
            logits,
            |logits| {
                let (loss, lse) = B::cross_entropy(logits.clone(), targets.clone());
                lse_out = Some(lse.clone());
                (loss, (logits, targets, lse))
            },
            |(logits, targets, lse), g| B::cross_entropy_backward(logits, targets, lse, g),
        );
        // Invariant: `unary_op` runs the forward exactly once, which sets `lse_out`.
        let lse = lse_out.expect("the forward ran");
        (loss, Self::from_inner(lse))
    }

    fn cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        lse: FloatTensor<Self>,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::cross_entropy_backward(
            logits.into_primitive(),
            targets,
            lse.into_primitive(),
            g.into_primitive(),
        ))
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod flex {
    //! The Flex implementation: contiguous f32 slices, rows split over rayon tasks of ~16k
    //! elements, each row through a `cpu.rs` kernel.

    use burn::backend::Flex;
    use burn::backend::TensorMetadata;
    use burn::backend::flex::{FlexTensor, Layout};
    use burn::backend::tensor::{FloatTensor, IntTensor};
    use burn::tensor::{Bytes, DType, Shape};
    use rayon::prelude::*;

    use super::CpuFusedOps;
    use crate::kernels::cpu;

    /// Rows per rayon task so a task has ~16k elements.
    fn rows_per_task(row: usize) -> usize {
        (16_384 / row.max(1)).max(1)
    }

    fn contiguous(t: &FlexTensor) -> FlexTensor {
        assert_eq!(t.dtype(), DType::F32, "the fused CPU ops take f32 tensors");
        t.to_contiguous()
    }

    fn output(v: Vec<f32>, shape: Shape) -> FlexTensor {
        FlexTensor::new(Bytes::from_elems(v), Layout::contiguous(shape), DType::F32)
    }

    fn last_dim(shape: &Shape) -> usize {
        shape[shape.num_dims() - 1]
    }

    /// Rows of `x` (last dim) through `f(row_index, x_row, y_row)` in parallel.
    fn map_rows(x: &[f32], row: usize, f: impl Fn(usize, &[f32], &mut [f32]) + Sync) -> Vec<f32> {
        let mut y = vec![0.0f32; x.len()];
        let per = rows_per_task(row);
        y.par_chunks_mut(per * row)
            .zip(x.par_chunks(per * row))
            .enumerate()
            .for_each(|(task, (yc, xc))| {
                for (j, (yr, xr)) in yc.chunks_mut(row).zip(xc.chunks(row)).enumerate() {
                    f(task * per + j, xr, yr);
                }
            });
        y
    }

    fn targets_of(t: IntTensor<Flex>) -> Vec<usize> {
        t.into_data().iter::<i64>().map(|v| v as usize).collect()
    }

    impl CpuFusedOps for Flex {
        fn softmax_biased(
            x: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            scale: f64,
        ) -> FloatTensor<Self> {
            let (x, bias) = (contiguous(&x), contiguous(&bias));
            let shape = x.shape();
            let [_, h, r, s] = [shape[0], shape[1], shape[2], shape[3]];
            assert_eq!(bias.shape()[1], 1, "the bias is broadcast over heads");
            let bv: &[f32] = bias.storage();
            let y = map_rows(x.storage(), s, |i, xr, yr| {
                let (b, row) = (i / (h * r), i % r);
                let off = (b * r + row) * s;
                cpu::softmax_row(xr, &bv[off..off + s], yr, scale as f32);
            });
            output(y, shape)
        }

        fn softmax_backward(
            y: FloatTensor<Self>,
            g: FloatTensor<Self>,
            scale: f64,
        ) -> FloatTensor<Self> {
            let (y, g) = (contiguous(&y), contiguous(&g));
            let shape = y.shape();
            let s = last_dim(&shape);
            let gv: &[f32] = g.storage();
            let dx = map_rows(y.storage(), s, |i, yr, dr| {
                cpu::softmax_backward_row(yr, &gv[i * s..(i + 1) * s], dr, scale as f32);
            });
            output(dx, shape)
        }

        fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
            let (x, w) = (contiguous(&x), contiguous(&w));
            let shape = x.shape();
            let d = last_dim(&shape);
            let wv: &[f32] = w.storage();
            let y = map_rows(x.storage(), d, |_, xr, yr| {
                cpu::rms_norm_row(xr, wv, yr, eps as f32);
            });
            output(y, shape)
        }

        fn rms_norm_backward(
            x: FloatTensor<Self>,
            w: FloatTensor<Self>,
            g: FloatTensor<Self>,
            eps: f64,
        ) -> FloatTensor<Self> {
            let (x, w, g) = (contiguous(&x), contiguous(&w), contiguous(&g));
            let shape = x.shape();
            let d = last_dim(&shape);
            let (wv, gv): (&[f32], &[f32]) = (w.storage(), g.storage());
            let dx = map_rows(x.storage(), d, |i, xr, dr| {
                cpu::rms_norm_backward_row(xr, wv, &gv[i * d..(i + 1) * d], dr, eps as f32);
            });
            output(dx, shape)
        }

        fn silu_mul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
            let (a, b) = (contiguous(&a), contiguous(&b));
            let shape = a.shape();
            let bv: &[f32] = b.storage();
            const CHUNK: usize = 16_384;
            let y = map_rows(a.storage(), CHUNK, |i, ar, yr| {
                let off = i * CHUNK;
                cpu::silu_mul(ar, &bv[off..off + ar.len()], yr);
            });
            output(y, shape)
        }

        fn silu_mul_backward(
            a: FloatTensor<Self>,
            b: FloatTensor<Self>,
            g: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let (a, b, g) = (contiguous(&a), contiguous(&b), contiguous(&g));
            let shape = a.shape();
            let (av, bv, gv): (&[f32], &[f32], &[f32]) = (a.storage(), b.storage(), g.storage());
            let n = av.len();
            let (mut da, mut db) = (vec![0.0f32; n], vec![0.0f32; n]);
            const CHUNK: usize = 16_384;
            da.par_chunks_mut(CHUNK)
                .zip(db.par_chunks_mut(CHUNK))
                .enumerate()
                .for_each(|(i, (dac, dbc))| {
                    let r = i * CHUNK..i * CHUNK + dac.len();
                    cpu::silu_mul_backward(&av[r.clone()], &bv[r.clone()], &gv[r], dac, dbc);
                });
            (output(da, shape.clone()), output(db, shape))
        }

        fn rope(
            x: FloatTensor<Self>,
            cos: FloatTensor<Self>,
            sin: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let (x, cos, sin) = (contiguous(&x), contiguous(&cos), contiguous(&sin));
            let shape = x.shape();
            let [_, t, heads, dh] = [shape[0], shape[1], shape[2], shape[3]];
            assert_eq!(
                cos.shape().num_elements(),
                t * dh,
                "RoPE tables are [T, Dh]"
            );
            let (cv, sv): (&[f32], &[f32]) = (cos.storage(), sin.storage());
            let y = map_rows(x.storage(), dh, |i, xr, yr| {
                let off = ((i / heads) % t) * dh;
                cpu::rope_row(xr, &cv[off..off + dh], &sv[off..off + dh], yr);
            });
            output(y, shape)
        }

        fn cross_entropy(
            logits: FloatTensor<Self>,
            targets: IntTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let x = contiguous(&logits);
            let shape = x.shape();
            let (n, v) = (shape[0], shape[1]);
            let tg = targets_of(targets);
            assert_eq!(tg.len(), n, "one target per row");
            let xv: &[f32] = x.storage();
            let rows: Vec<(f32, f32)> = (0..n)
                .into_par_iter()
                .map(|i| cpu::cross_entropy_row(&xv[i * v..(i + 1) * v], tg[i]))
                .collect();
            let loss = rows.iter().map(|r| r.0).collect();
            let lse = rows.iter().map(|r| r.1).collect();
            (
                output(loss, Shape::new([n, 1])),
                output(lse, Shape::new([n, 1])),
            )
        }

        fn cross_entropy_backward(
            logits: FloatTensor<Self>,
            targets: IntTensor<Self>,
            lse: FloatTensor<Self>,
            g: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let (x, lse, g) = (contiguous(&logits), contiguous(&lse), contiguous(&g));
            let shape = x.shape();
            let v = shape[1];
            let tg = targets_of(targets);
            let (lv, gv): (&[f32], &[f32]) = (lse.storage(), g.storage());
            let dx = map_rows(x.storage(), v, |i, xr, dr| {
                cpu::cross_entropy_backward_row(xr, lv[i], tg[i], gv[i], dr);
            });
            output(dx, shape)
        }
    }
}
