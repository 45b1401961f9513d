//! The autodiff rule shared by our single-input custom ops (quantized matmul, biased softmax,
//! RoPE, cross-entropy): the forward runs on the inner backend and returns what its backward
//! keeps; the backward maps (kept state, output gradient) to the input gradient.

use burn::backend::Backend;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;

/// The input gradient as a function of the kept state and the output gradient.
pub type BackwardFn<B, S> = fn(S, FloatTensor<B>) -> FloatTensor<B>;

#[derive(Debug)]
struct Unary<B: Backend, S>(BackwardFn<B, S>);

impl<B: Backend, S: Clone + Send + std::fmt::Debug + 'static> Backward<B, 1> for Unary<B, S> {
    type State = S;
    fn backward(self, ops: Ops<S, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let g = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, (self.0)(ops.state, g));
        }
    }
}

/// `forward(x)` -> (output, state) on the inner backend, tracked when `x` is: the state (cheap
/// handles to tensors) is kept for `backward` only then.
pub fn unary_op<B: Backend, C: CheckpointStrategy, S: Clone + Send + std::fmt::Debug + 'static>(
    x: FloatTensor<Autodiff<B, C>>,
    forward: impl FnOnce(FloatTensor<B>) -> (FloatTensor<B>, S),
    backward: BackwardFn<B, S>,
) -> FloatTensor<Autodiff<B, C>> {
    match Unary(backward)
        .prepare::<C>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (y, state) = forward(x.into_primitive());
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.into_primitive()).0),
    }
}
