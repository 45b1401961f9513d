//! A frozen GGUF-quantized matrix on the device (`QuantWeight`), split into row chunks so no
//! buffer exceeds the device's storage-binding limit (lavapipe: 128 MiB; a 128k-vocabulary
//! output head is larger), with the matmul a linear layer needs and the row gather an
//! embedding needs. Autodiff flows through `ops::QuantOps`.

use burn::backend::Dispatch;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use super::layout::QuantType;
use super::ops::QuantOps;

/// W [rows, cols] (rows = output features, like an HF weight) in repacked blocks.
#[derive(Clone)]
pub struct QuantWeight {
    pub qtype: QuantType,
    pub rows: usize,
    pub cols: usize,
    /// (first row, row count, U32 words) per chunk.
    pub chunks: Vec<(usize, usize, Tensor<1, Int>)>,
    /// Largest buffer the kernels may bind, in bytes.
    pub max_binding: usize,
}

impl QuantWeight {
    /// Uploads repacked `words` (see `layout::repack`) in chunks of at most `max_binding` bytes.
    pub fn upload(
        qtype: QuantType,
        rows: usize,
        cols: usize,
        words: &[u32],
        max_binding: usize,
        device: &Device,
    ) -> QuantWeight {
        let row_words = cols / qtype.block_elems() * qtype.block_words();
        assert_eq!(words.len(), rows * row_words, "repacked size");
        let per_chunk = (max_binding / (row_words * 4)).clamp(1, rows.max(1));
        let chunks = (0..rows)
            .step_by(per_chunk)
            .map(|start| {
                let n = per_chunk.min(rows - start);
                let w = words[start * row_words..(start + n) * row_words].to_vec();
                let len = w.len();
                let t =
                    Tensor::<1, Int>::from_data(TensorData::new(w, [len]), (device, DType::U32));
                (start, n, t)
            })
            .collect();
        QuantWeight {
            qtype,
            rows,
            cols,
            chunks,
            max_binding,
        }
    }

    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        self.qtype.bytes(self.rows, self.cols)
    }

    /// `x · Wᵀ`, chunk by chunk along the output features; rows of x are split too when a
    /// chunk's output would pass the binding limit.
    ///
    /// # Shapes
    /// x [M, cols] -> [M, rows]
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [m, _] = x.dims();
        let mut cols_out = Vec::with_capacity(self.chunks.len());
        for (_, n, w) in &self.chunks {
            let rows_per = (self.max_binding / (n * 4)).clamp(1, m.max(1));
            let mut parts = Vec::new();
            for r0 in (0..m).step_by(rows_per) {
                let xr = if rows_per >= m {
                    x.clone()
                } else {
                    x.clone().narrow(0, r0, rows_per.min(m - r0))
                };
                parts.push(matmul(xr, w, self.qtype, *n, self.cols, false));
            }
            cols_out.push(join(parts, 0));
        }
        join(cols_out, 1)
    }

    /// Rows of W for token ids (an embedding lookup).
    ///
    /// # Shapes
    /// ids [T] -> [T, cols]
    pub fn gather(&self, ids: Tensor<1, Int>) -> Tensor<2> {
        let mut out: Option<Tensor<2>> = None;
        for (start, n, w) in &self.chunks {
            let part = Tensor::from_dispatch(<Dispatch as QuantOps>::quant_gather(
                ids.clone().into_dispatch(),
                w.clone().into_dispatch(),
                self.qtype.code(),
                *n,
                self.cols,
                *start,
            ));
            out = Some(match out {
                Some(o) => o + part,
                None => part,
            });
        }
        // Invariant: `upload` makes at least one chunk for any rows >= 1, and the loader only
        // builds weights from validated configs (no zero-sized dimension).
        out.expect("a weight has at least one chunk")
    }
}

/// One kernel call: `transposed = false`: x [M, cols] · Wᵀ -> [M, rows]; `true`: x [M, rows] · W
/// -> [M, cols].
pub fn matmul(
    x: Tensor<2>,
    w: &Tensor<1, Int>,
    qtype: QuantType,
    rows: usize,
    cols: usize,
    transposed: bool,
) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as QuantOps>::quant_matmul(
        x.into_dispatch(),
        w.clone().into_dispatch(),
        qtype.code(),
        rows,
        cols,
        transposed,
    ))
}

/// The parts concatenated along `dim`, without a copy when there is only one.
fn join(mut parts: Vec<Tensor<2>>, dim: usize) -> Tensor<2> {
    if parts.len() == 1
        && let Some(only) = parts.pop()
    {
        return only;
    }
    Tensor::cat(parts, dim)
}
