//! Activation checkpointing per decoder layer (HF's `gradient_checkpointing`): the forward
//! pass keeps only each layer's input, and the backward pass runs every layer again, last to
//! first, to rebuild its graph just before its gradient is needed. Memory for activations
//! falls from every layer's intermediates to one layer's plus one residual-stream tensor per
//! layer, for one more forward pass of compute.
//!
//! tch has no custom autograd functions, so the backward pass is driven here: the forward
//! pass hands the loss a fresh leaf in place of the last layer's output; [`Recorded::backward`]
//! takes that leaf's gradient and pushes it down through each recomputed layer in turn
//! (`sum(y · g)` has gradient `g` with respect to `y`), then into the embedding.

use tch::{Kind, Tensor};

/// One checkpointed forward pass, waiting for its loss's backward pass.
#[derive(Debug)]
pub struct Segment<C> {
    /// The embedding output, with its graph (it reaches the embedding's weight when that
    /// trains).
    entry: Tensor,
    /// Each layer's input, without a graph.
    inputs: Vec<Tensor>,
    /// The leaf that stands for the last layer's output in the loss's graph.
    top: Tensor,
    /// What the layers need besides their input (positions, mask), for the recomputation.
    context: C,
}

impl<C> Segment<C> {
    /// Run `layers` (a function of the layer index and its input) over `entry` without
    /// keeping their graphs; returns the segment and the leaf that the rest of the forward
    /// pass (final norm, head, loss) builds on.
    pub fn forward(
        entry: Tensor,
        layers: usize,
        context: C,
        mut layer: impl FnMut(&C, usize, &Tensor) -> Tensor,
    ) -> (Self, Tensor) {
        let mut inputs = Vec::with_capacity(layers);
        let mut x = entry.detach();
        tch::no_grad(|| {
            for i in 0..layers {
                let y = layer(&context, i, &x);
                inputs.push(std::mem::replace(&mut x, y));
            }
        });
        let top = x.set_requires_grad(true);
        (
            Self {
                entry,
                inputs,
                top: top.shallow_clone(),
                context,
            },
            top,
        )
    }
}

/// The segments of a model's checkpointed forward passes since its last backward pass.
#[derive(Debug)]
pub struct Recorded<C>(std::sync::Mutex<Vec<Segment<C>>>);

impl<C> Default for Recorded<C> {
    fn default() -> Self {
        Self(std::sync::Mutex::new(Vec::new()))
    }
}

impl<C> Recorded<C> {
    /// Keep `segment` until the next backward pass.
    pub fn push(&self, segment: Segment<C>) {
        self.lock().push(segment);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Segment<C>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Backpropagate `loss`, then every recorded segment through its layers, recomputed by
    /// `layer` (the same function the forward pass ran). Gradients accumulate into the
    /// variables as one plain backward pass would put them there.
    pub fn backward(&self, loss: &Tensor, mut layer: impl FnMut(&C, usize, &Tensor) -> Tensor) {
        if loss.requires_grad() {
            loss.backward();
        }
        let segments = std::mem::take(&mut *self.lock());
        for seg in segments.into_iter().rev() {
            let mut grad = seg.top.grad();
            if !grad.defined() {
                // The loss did not use this pass.
                continue;
            }
            for (i, input) in seg.inputs.iter().enumerate().rev() {
                let x = input.detach().set_requires_grad(true);
                let y = layer(&seg.context, i, &x);
                (y * &grad).sum(Kind::Float).backward();
                grad = x.grad();
                if !grad.defined() {
                    break;
                }
            }
            if grad.defined() && seg.entry.requires_grad() {
                (seg.entry * grad).sum(Kind::Float).backward();
            }
        }
    }

    /// Forget what is recorded (a forward pass whose loss will never be backpropagated).
    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// Whether autograd records operations here and now.
pub fn grad_enabled() -> bool {
    (Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true) * 1.0)
        .requires_grad()
}
