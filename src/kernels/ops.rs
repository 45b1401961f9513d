//! The quantized-weight ops as a burn backend extension: the WGSL kernels in `shaders/` on every
//! CubeCL runtime (wgpu natively and in the browser), burn's fusion wrapper, and an autodiff rule
//! whose backward runs the transposed kernel for the input gradient. The base weight is frozen,
//! so no weight gradient exists and nothing weight-shaped is ever materialized.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
#[cfg(not(target_arch = "wasm32"))]
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::ops::IntTensorOps;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{AutodiffBackend, Backend, backend_extension};
use burn::tensor::{DType, IntDType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::template::{KernelSource, SourceKernel, SourceTemplate};
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::server::KernelArguments;

use super::autodiff::unary_op;
use super::layout::QuantType;
use super::shader;

#[cfg(not(target_arch = "wasm32"))]
fn matmul_meta(
    x: &TensorSpec,
    _w: &TensorSpec,
    qtype: &u32,
    rows: &usize,
    cols: &usize,
    transposed: &bool,
) -> TensorSpec {
    let m = x.shape[0];
    let _ = qtype;
    let c = if *transposed { *cols } else { *rows };
    TensorSpec::new([m, c].into(), DType::F32)
}

#[cfg(not(target_arch = "wasm32"))]
fn gather_meta(
    ids: &TensorSpec,
    _w: &TensorSpec,
    _qtype: &u32,
    _rows: &usize,
    cols: &usize,
    _start: &usize,
) -> TensorSpec {
    TensorSpec::new([ids.shape[0], *cols].into(), DType::F32)
}

/// Ops on a weight W [rows, cols] held as repacked GGUF blocks (`w`, a U32 tensor).
#[backend_extension(Cube, Fusion: cfg(not(target_arch = "wasm32")), Autodiff)]
pub trait QuantOps: Backend {
    /// `transposed = false`: x [M, cols] -> x · Wᵀ [M, rows];
    /// `transposed = true`:  x [M, rows] -> x · W [M, cols].
    #[fusion(meta = matmul_meta)]
    fn quant_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        qtype: u32,
        rows: usize,
        cols: usize,
        transposed: bool,
    ) -> FloatTensor<Self>;

    /// Rows `ids - start` of W for ids inside `[start, start + rows)`, zeros elsewhere:
    /// ids [T] -> [T, cols]. Not differentiable (token ids have no gradient, W is frozen).
    #[fusion(meta = gather_meta)]
    fn quant_gather(
        ids: IntTensor<Self>,
        w: IntTensor<Self>,
        qtype: u32,
        rows: usize,
        cols: usize,
        start: usize,
    ) -> FloatTensor<Self>;
}

/// A kernel template: `shaders/dequant_<type>.wgsl` followed by the op's body.
struct QuantKernel {
    qtype: QuantType,
    body: &'static str,
    transposed: bool,
}

impl KernelSource for QuantKernel {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(shader(self.qtype.shader()))
            .add_template(shader(self.body))
            .register("transposed", self.transposed.to_string())
    }
    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.qtype.code(), self.body, self.transposed))
    }
    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

fn empty_f32(like: &CubeTensor, shape: Shape) -> CubeTensor {
    let handle = like.client.empty(shape.num_elements() * 4);
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape,
        handle,
        DType::F32,
    )
}

/// Invariant, not input: the only callers pass `QuantType::code()` (quant_weight.rs), so an
/// unknown code is a bug in this crate.
fn qtype_of(code: u32) -> QuantType {
    QuantType::from_code(code).expect("quantized op called with an unknown type code")
}

impl QuantOps for CubeBackend {
    fn quant_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        qtype: u32,
        rows: usize,
        cols: usize,
        transposed: bool,
    ) -> FloatTensor<Self> {
        let t = qtype_of(qtype);
        assert_eq!(
            x.dtype,
            DType::F32,
            "quantized matmul takes f32 activations"
        );
        let x = into_contiguous(x);
        let w = into_contiguous(w);
        let dims = x.meta.shape().clone();
        let (m, r) = (dims[0], dims[1]);
        let c = if transposed { cols } else { rows };
        assert_eq!(r, if transposed { rows } else { cols }, "inner dims");
        let out = empty_f32(&x, Shape::new([m, c]));
        let bpr = (cols / t.block_elems()) as u32;
        let info = x
            .client
            .create_from_slice(bytemuck::cast_slice(&[m as u32, r as u32, c as u32, bpr]));
        let kernel = QuantKernel {
            qtype: t,
            body: "quant_matmul",
            transposed,
        };
        x.client.launch(
            Box::new(SourceKernel::new(kernel, CubeDim::new_2d(16, 16))),
            // 64 x 64 output tile per workgroup (shaders/quant_matmul.wgsl).
            CubeCount::Static(c.div_ceil(64) as u32, m.div_ceil(64) as u32, 1),
            KernelArguments::new().with_buffers(vec![
                x.handle.clone().binding(),
                w.handle.clone().binding(),
                out.handle.clone().binding(),
                info.binding(),
            ]),
        );
        out
    }

    fn quant_gather(
        ids: IntTensor<Self>,
        w: IntTensor<Self>,
        qtype: u32,
        rows: usize,
        cols: usize,
        start: usize,
    ) -> FloatTensor<Self> {
        let t = qtype_of(qtype);
        let ids = into_contiguous(Self::int_cast(ids, IntDType::U32));
        let w = into_contiguous(w);
        let n = ids.meta.shape()[0];
        let out = empty_f32(&w, Shape::new([n, cols]));
        let bpr = (cols / t.block_elems()) as u32;
        let info = w.client.create_from_slice(bytemuck::cast_slice(&[
            n as u32,
            cols as u32,
            bpr,
            start as u32,
            rows as u32,
        ]));
        let groups = ((n * cols) as u32).div_ceil(256).max(1);
        let (gx, gy) = if groups <= 65535 {
            (groups, 1)
        } else {
            (65535, groups.div_ceil(65535))
        };
        let kernel = QuantKernel {
            qtype: t,
            body: "quant_gather",
            transposed: false,
        };
        w.client.launch(
            Box::new(SourceKernel::new(kernel, CubeDim::new_1d(256))),
            CubeCount::Static(gx, gy, 1),
            KernelArguments::new().with_buffers(vec![
                ids.handle.clone().binding(),
                w.handle.clone().binding(),
                out.handle.clone().binding(),
                info.binding(),
            ]),
        );
        out
    }
}

impl<B: Backend + QuantOps, C: CheckpointStrategy> QuantOps for Autodiff<B, C> {
    fn quant_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        qtype: u32,
        rows: usize,
        cols: usize,
        transposed: bool,
    ) -> FloatTensor<Self> {
        // d(x · op(W))/dx = dy · op(W)ᵀ: the same kernel with the other orientation.
        unary_op::<B, C, _>(
            x,
            |x| {
                let y = B::quant_matmul(x, w.clone(), qtype, rows, cols, transposed);
                (y, (w, qtype, rows, cols, transposed))
            },
            |(w, qtype, rows, cols, transposed), dy| {
                B::quant_matmul(dy, w, qtype, rows, cols, !transposed)
            },
        )
    }

    fn quant_gather(
        ids: IntTensor<Self>,
        w: IntTensor<Self>,
        qtype: u32,
        rows: usize,
        cols: usize,
        start: usize,
    ) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::quant_gather(ids, w, qtype, rows, cols, start))
    }
}
