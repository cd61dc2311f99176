//! Mixed-precision training (`train.precision`). The weights and the optimizer state stay f32
//! (the "master weights"); each step runs forward and backward on a half-precision cast of
//! them, and the gradients flow back through the cast into f32, so updates too small for the
//! half type still accumulate. The loss is computed in f32 from the cast-back logits.
//!
//! float16 has too few exponent bits for small gradients, so `f16-mixed` multiplies the loss
//! by a scale before the backward pass and divides the gradients by it after, as PyTorch's
//! `GradScaler` does: a step whose gradients overflow is skipped and halves the scale, and
//! every `GROWTH_INTERVAL` steps in a row without overflow double it. bfloat16 has f32's
//! exponent range and needs no scaling.
//!
//! Batch norm keeps f32 parameters and running statistics and runs on f32 inputs
//! (`model::in_f32`), as under PyTorch's autocast.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::Error;
use crate::backend::SelectedBackend;
use crate::config::Precision;

/// The half type a precision computes in; `None` for f32.
pub fn compute_dtype(precision: Precision) -> Option<FloatDType> {
    match precision {
        Precision::F32 => None,
        Precision::Bf16Mixed => Some(FloatDType::BF16),
        Precision::F16Mixed => Some(FloatDType::F16),
    }
}

/// Refuses a precision the chosen device cannot compute in, before anything is trained.
pub fn check_supported(precision: Precision, backend: &SelectedBackend) -> Result<(), Error> {
    let Some(dtype) = compute_dtype(precision) else {
        return Ok(());
    };
    if backend.device.supports_dtype(dtype) {
        return Ok(());
    }
    let on = match &backend.adapter {
        Some(adapter) => format!("{} backend on {adapter}", backend.name),
        None => format!("{} backend", backend.name),
    };
    let other = match precision {
        Precision::Bf16Mixed if backend.device.supports_dtype(FloatDType::F16) => {
            "\"f16-mixed\" or \"f32\""
        }
        Precision::F16Mixed if backend.device.supports_dtype(FloatDType::BF16) => {
            "\"bf16-mixed\" or \"f32\""
        }
        _ => "\"f32\"",
    };
    Err(Error::Usage(format!(
        "train.precision = \"{precision}\": the {on} cannot compute in {dtype:?}; use {other}{}",
        if backend.name == crate::backend::BackendName::Ndarray {
            " (or --backend flex, which computes in f16 and bf16)"
        } else {
            ""
        }
    )))
}

/// The half-precision view of a model for one step's forward and backward passes.
#[derive(Debug, Clone, Copy)]
pub struct Autocast {
    dtype: FloatDType,
}

impl Autocast {
    pub fn new(precision: Precision) -> Option<Self> {
        compute_dtype(precision).map(|dtype| Self { dtype })
    }

    /// The half type.
    pub fn dtype(&self) -> FloatDType {
        self.dtype
    }

    /// `model` with its weights cast to the half type, batch norm excepted. The casts are
    /// tracked, so gradients reach the f32 weights under their own parameter ids.
    pub fn model<M: Module>(&self, model: &M) -> M {
        model.clone().map(&mut CastWeights {
            dtype: self.dtype,
            batch_norm_depth: 0,
        })
    }
}

struct CastWeights {
    dtype: FloatDType,
    /// Above zero inside a batch norm, whose parameters and statistics stay f32.
    batch_norm_depth: usize,
}

const BATCH_NORM: &str = "Struct:BatchNorm";

impl ModuleMapper for CastWeights {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        if container_type == BATCH_NORM {
            self.batch_norm_depth += 1;
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if container_type == BATCH_NORM {
            self.batch_norm_depth -= 1;
        }
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.batch_norm_depth > 0 {
            return param;
        }
        let dtype = self.dtype;
        param.map(|weights| weights.cast(dtype))
    }
}

#[cfg(test)]
mod tests {
    use burn::module::ModuleVisitor;
    use burn::optim::GradientsParams;
    use burn::tensor::{DType, Distribution};

    use super::*;
    use crate::config::ResnetConfig;
    use crate::data::ImageShape;
    use crate::model::Resnet;

    /// The dtypes of a module's float tensors, and of their gradients where `grads` has one.
    struct Dtypes<'a> {
        grads: Option<&'a GradientsParams>,
        found: Vec<DType>,
    }

    impl ModuleVisitor for Dtypes<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            match self.grads {
                Some(grads) => {
                    if let Some(grad) = grads.get::<D>(param.id) {
                        self.found.push(grad.dtype());
                    }
                }
                None => self.found.push(param.val().dtype()),
            }
        }
    }

    fn dtypes(model: &Resnet, grads: Option<&GradientsParams>) -> Vec<DType> {
        let mut visitor = Dtypes {
            grads,
            found: Vec::new(),
        };
        model.visit(&mut visitor);
        visitor.found
    }

    #[test]
    fn the_cast_model_computes_in_bf16_and_its_gradients_reach_the_f32_weights() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let input = ImageShape {
            channels: 1,
            height: 8,
            width: 8,
        };
        let config = ResnetConfig { depth: 8, width: 4 };
        let model = Resnet::build(&config, input, 3, &device);
        let autocast = Autocast::new(Precision::Bf16Mixed).expect("a half type");
        let half = autocast.model(&model);

        let weights = dtypes(&model, None);
        let cast = dtypes(&half, None);
        assert!(weights.iter().all(|&dtype| dtype == DType::F32));
        // Each batch norm keeps its four tensors (scale, shift, running mean and variance)
        // in f32; everything else is bf16.
        let kept = cast.iter().filter(|&&dtype| dtype == DType::F32).count();
        assert!(kept > 0 && kept % 4 == 0, "{cast:?}");
        assert!(cast.contains(&DType::BF16), "{cast:?}");

        let images = Tensor::<4>::random([2, 1, 8, 8], Distribution::Default, &device);
        let logits = half.logits(images.cast(autocast.dtype()));
        assert_eq!(logits.dtype(), DType::BF16);
        let loss = logits.cast(FloatDType::F32).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let gradients = dtypes(&model, Some(&grads));
        // Every trained tensor (all but the batch norms' running statistics) has an f32
        // gradient under the f32 weight's id.
        let trained = weights.len() - kept / 2;
        assert_eq!(gradients.len(), trained, "{gradients:?}");
        assert!(gradients.iter().all(|&dtype| dtype == DType::F32));
    }
}
