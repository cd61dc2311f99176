//! Dropout on stoke's fused kernel (`kernels::dropout`): the same fields, record and
//! train/eval behaviour as burn's `Dropout`, so checkpoints of either load into the other, but
//! one pass over the data instead of a random tensor and two multiplications, with masks that
//! do not depend on threads.

use burn::module::{Flag, Param};
use burn::prelude::*;

use crate::kernels;

#[derive(Module, Debug)]
pub struct Dropout {
    pub prob: f64,
    pub training: Param<Flag>,
}

impl Dropout {
    /// # Panics
    /// If `prob` is outside `[0, 1)`; the config's validation refuses such values first.
    pub fn new(prob: f64) -> Self {
        assert!((0.0..1.0).contains(&prob), "dropout {prob} outside [0, 1)");
        Self {
            prob,
            training: Param::from_bool(true),
        }
    }

    /// Active only when training: on an autodiff device, outside `valid()`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self.active_prob(&x) {
            0.0 => x,
            prob => kernels::dropout(x, prob),
        }
    }

    /// The drop probability for `x`: this one while training, 0 otherwise. For kernels that
    /// apply the dropout themselves.
    pub fn active_prob<const D: usize>(&self, x: &Tensor<D>) -> f64 {
        if self.training.is_enabled() && x.device().is_autodiff() {
            self.prob
        } else {
            0.0
        }
    }
}
