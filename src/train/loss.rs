//! Token-level mean cross-entropy over the labelled tokens of a batch. Only the labelled
//! positions go through the output head, in chunks whose [N, V] f32 logits stay under a byte
//! budget (lavapipe binds at most 128 MiB; a 4 x 255 x 49152 logits tensor would be 200 MB).

use burn::tensor::{Int, Tensor, TensorData};

use crate::data::Batch;
use crate::kernels::cpu_ops;
use crate::model::Llama;

/// Largest logits chunk, in bytes, by default.
pub const DEFAULT_LOGITS_CHUNK_BYTES: usize = 64 << 20;

/// Mean cross-entropy over `batch.targets` (a [1] tensor, autodiff when adapters are).
pub fn batch_loss(model: &Llama, batch: &Batch, chunk_bytes: usize) -> Tensor<1> {
    let ids = model.ids_tensor(&batch.ids, batch.b, batch.t);
    let h = model.hidden(ids, Some(&batch.valid), None); // [B, T, D]
    loss_from_hidden(model, batch, h, chunk_bytes)
}

/// The labelled positions of a batch in chunks of at most `rows`: (row indices into the
/// flattened [B*T] positions, targets [n, 1]).
fn label_chunks(
    model: &Llama,
    batch: &Batch,
    rows: usize,
) -> Vec<(Tensor<1, Int>, Tensor<2, Int>)> {
    let device = &model.device;
    batch
        .positions
        .chunks(rows)
        .zip(batch.targets.chunks(rows))
        .map(|(pos, tgt)| {
            let n = pos.len();
            let idx = Tensor::<1, Int>::from_data(
                TensorData::new(pos.iter().map(|&p| p as i64).collect::<Vec<_>>(), [n]),
                device,
            );
            let tgt = Tensor::<2, Int>::from_data(
                TensorData::new(tgt.iter().map(|&t| t as i64).collect::<Vec<_>>(), [n, 1]),
                device,
            );
            (idx, tgt)
        })
        .collect()
}

/// Rows of logits per chunk so one chunk's [n, V] f32 logits stay under `chunk_bytes`.
fn chunk_rows(model: &Llama, chunk_bytes: usize) -> usize {
    (chunk_bytes / (model.config.vocab_size * 4)).max(1)
}

/// The loss from hidden states after the final norm.
pub fn loss_from_hidden(
    model: &Llama,
    batch: &Batch,
    h: Tensor<3>,
    chunk_bytes: usize,
) -> Tensor<1> {
    let h = h.reshape([batch.b * batch.t, model.config.hidden_size]); // [B*T, D]
    let mut total: Option<Tensor<1>> = None;
    for (idx, tgt) in label_chunks(model, batch, chunk_rows(model, chunk_bytes)) {
        let s = cross_entropy_sum(model.logits(h.clone().select(0, idx)), tgt); // [1]
        total = Some(match total {
            Some(t) => t + s,
            None => s,
        });
    }
    let n = batch.targets.len().max(1) as f64;
    match total {
        Some(t) => t.div_scalar(n),
        None => Tensor::zeros([1], &model.device),
    }
}

/// The loss and its gradient with respect to the normed hidden states `h` [B, T, D] (a plain
/// tensor), one logits chunk at a time: each chunk is backpropagated before the next is
/// computed, so only one chunk's logits are ever alive (the head has nothing to train).
fn loss_and_hidden_grad(
    model: &Llama,
    batch: &Batch,
    h: Tensor<3>,
    chunk_bytes: usize,
) -> (Tensor<1>, Tensor<3>) {
    let [b, t, d] = h.dims();
    let leaf = h.reshape([b * t, d]).detach().autodiff().require_grad();
    let n = batch.targets.len().max(1) as f64;
    let mut loss = Tensor::<1>::zeros([1], &model.device);
    let mut grad = Tensor::<2>::zeros([b * t, d], &model.device);
    for (idx, tgt) in label_chunks(model, batch, chunk_rows(model, chunk_bytes)) {
        let s = cross_entropy_sum(model.logits(leaf.clone().select(0, idx)), tgt).div_scalar(n);
        loss = loss + s.clone().inner();
        let g = s.backward();
        if let Some(gh) = leaf.grad(&g) {
            grad = grad + gh;
        }
    }
    (loss, grad.reshape([b, t, d]))
}

/// Loss and adapter gradients (in `Llama::adapters()` order, (dA, dB) each) with per-block
/// activation recomputation: a forward without autodiff keeps only each block's input; then
/// from the top, each block is run again with autodiff from its saved input and backpropagated
/// with the gradient arriving from above (`sum(y · g)`), so only one block's graph is alive at
/// a time. Costs one extra forward; equal to `batch_loss` + backward up to f32 rounding.
/// `dropout_seed` makes both forwards of a block draw the same dropout masks.
pub fn loss_and_grads_recomputed(
    model: &Llama,
    batch: &Batch,
    chunk_bytes: usize,
    dropout_seed: Option<u64>,
) -> (Tensor<1>, Vec<(Tensor<2>, Tensor<2>)>) {
    let ids = model.ids_tensor(&batch.ids, batch.b, batch.t);
    let pos = model.positions(batch.b, batch.t, 0, Some(&batch.valid), dropout_seed);
    let mut frozen = model.clone();
    frozen.freeze_adapters();
    let mut inputs = Vec::with_capacity(model.blocks.len() + 1);
    let mut x = frozen.embed_tokens(ids);
    for i in 0..model.blocks.len() {
        inputs.push(x.clone());
        x = frozen.block(i, x, &pos, None);
    }
    let leaf = |x: Tensor<3>| x.detach().autodiff().require_grad();
    let (loss, g_hidden) =
        loss_and_hidden_grad(model, batch, frozen.final_norm(x.clone()), chunk_bytes);
    let top = leaf(x);
    let g = (model.final_norm(top.clone()) * g_hidden).sum().backward();
    // Invariants below: `top` and each `xi` are require_grad leaves that the backpropagated
    // expression uses, so their gradients exist; `inputs` holds one entry per block.
    let mut upstream = top.grad(&g).expect("gradient of the last block's output");
    let mut per_block = Vec::with_capacity(model.blocks.len());
    for i in (0..model.blocks.len()).rev() {
        let xi = leaf(inputs.pop().expect("one input per block"));
        let y = model.block(i, xi.clone(), &pos, None);
        // The arriving gradient is a plain tensor: a constant in this graph.
        let g = (y * upstream).sum().backward();
        let grads: Vec<(Tensor<2>, Tensor<2>)> = model
            .block_adapters(i)
            .into_iter()
            .map(|a| {
                let z =
                    |t: &Tensor<2>| t.grad(&g).unwrap_or_else(|| t.clone().inner().zeros_like());
                (z(&a.a), z(&a.b))
            })
            .collect();
        per_block.push(grads);
        if i > 0 {
            upstream = xi.grad(&g).expect("gradient of a block's input");
        } else {
            upstream = Tensor::zeros([1, 1, 1], &model.device);
        }
    }
    per_block.reverse();
    (loss, per_block.into_iter().flatten().collect())
}

/// Σ −log softmax(logits)[target] over rows, with the partition sum added in two levels
/// (blocks of ≤ 1024, then the blocks). A flat f32 sum over a 49k vocabulary drops most of the
/// tail's mass (each tiny exp rounds away against a running total near 1), which biased the
/// loss by −1.2e-4 relative against PyTorch; the blocked sum matches it to ~1e-5.
///
/// # Shapes
/// logits [N, V], targets [N, 1] -> [1]
pub fn cross_entropy_sum(logits: Tensor<2>, targets: Tensor<2, Int>) -> Tensor<1> {
    if cpu_ops::available(&logits.device()) {
        return cpu_ops::cross_entropy_sum(logits, targets);
    }
    cross_entropy_sum_composed(logits, targets)
}

/// `cross_entropy_sum` as composed tensor ops (every device but the CPU, whose fused op
/// accumulates the partition sum in f64; and its twin).
pub fn cross_entropy_sum_composed(logits: Tensor<2>, targets: Tensor<2, Int>) -> Tensor<1> {
    let [n, v] = logits.dims();
    let shifted = logits.clone() - logits.max_dim(1).detach(); // [N, V]
    let e = shifted.clone().exp();
    let block = (1..=1024)
        .rev()
        .find(|b| v % b == 0 && *b >= 64)
        .unwrap_or(v);
    let sum = e
        .reshape([n, v / block, block])
        .sum_dim(2)
        .reshape([n, v / block])
        .sum_dim(1); // [N, 1]
    (sum.log() - shifted.gather(1, targets)).sum()
}
