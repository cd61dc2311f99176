//! Batches on the device, as models take them. Data workers make them (a built-in dataset's
//! host batch moved onto the device, or a user dataset's own batch), the loop passes them on
//! without looking inside ([`AnyBatch`]), and the model they were made for takes them back as
//! its own type.

use std::any::Any;

use burn::prelude::*;
use burn::tensor::FloatDType;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::HostBatch;
use crate::task::Scored;

/// What the loop needs to know of a batch without knowing its type.
pub trait Batch: Send + 'static {
    /// Samples in the batch (images, texts, windows, rows): what throughput counts.
    fn samples(&self) -> usize;

    /// The predictions the batch's loss is a mean over: its samples, or for a language model
    /// its tokens. A step's passes (and ranks) weight their losses by it.
    fn predictions(&self) -> usize {
        self.samples()
    }

    /// Tokens the model reads, for text (tokens per second); 0 otherwise.
    fn tokens(&self) -> usize {
        0
    }

    /// The batch with its float inputs cast to `dtype`, for mixed precision (targets and
    /// integer inputs stay as they are). The default leaves the batch as it is, and the
    /// model computes in `dtype` from its first layer on.
    fn autocast(self, _dtype: FloatDType) -> Self
    where
        Self: Sized,
    {
        self
    }
}

/// A batch whose type only the model it was made for knows.
pub struct AnyBatch {
    batch: Box<dyn Any + Send>,
    samples: usize,
    predictions: usize,
    tokens: usize,
    type_name: &'static str,
}

impl AnyBatch {
    pub fn new<B: Batch>(batch: B) -> Self {
        Self {
            samples: batch.samples(),
            predictions: batch.predictions(),
            tokens: batch.tokens(),
            type_name: std::any::type_name::<B>(),
            batch: Box::new(batch),
        }
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    pub fn predictions(&self) -> usize {
        self.predictions
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// The batch as `B`, or the name of the type it is.
    pub fn take<B: Batch>(self) -> Result<B, &'static str> {
        let type_name = self.type_name;
        self.batch
            .downcast::<B>()
            .map(|batch| *batch)
            .map_err(|_| type_name)
    }
}

/// Where and for what a batch is made: the device it goes to, and for training the epoch, so
/// that per-sample randomness (augmentation) can be drawn from [`BatchContext::rng`] and
/// comes out the same on every run and resume.
#[derive(Clone, Debug)]
pub struct BatchContext {
    pub device: Device,
    pub seed: u64,
    /// The training epoch (from 0); `None` for evaluation, which draws nothing.
    pub epoch: Option<usize>,
}

impl BatchContext {
    /// The random stream of sample `index` in this epoch: a function of (seed, epoch, index)
    /// alone, whatever the order, batch or worker the sample meets.
    pub fn rng(&self, index: u32) -> ChaCha8Rng {
        let epoch = self.epoch.map_or(u64::MAX, |epoch| epoch as u64);
        let mut z = self.seed
            ^ epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ u64::from(index).wrapping_mul(0xD1B5_4A32_D192_ED03);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
    }

    /// The random stream of a whole batch (mixup, CutMix) in this epoch: a function of
    /// (seed, epoch, the batch's samples), as the batches of an epoch are fixed by its order
    /// and the batch size, whatever the worker that makes them.
    pub fn batch_rng(&self, indices: &[u32]) -> ChaCha8Rng {
        let samples = indices
            .iter()
            .fold(0xA076_1D64_78BD_642Fu64, |hash, &index| {
                (hash ^ u64::from(index)).wrapping_mul(0x1000_0000_01B3)
            });
        let mut draw = self.rng(samples as u32 ^ (samples >> 32) as u32);
        ChaCha8Rng::seed_from_u64(rand::RngCore::next_u64(&mut draw) ^ 0xE703_7ED1_A0B4_28DB)
    }
}

/// A batch as the built-in models take it: stoke's inputs and the task's targets.
#[derive(Clone)]
pub struct DeviceBatch {
    pub input: Input,
    pub targets: Targets,
    pub samples: usize,
    pub tokens: usize,
}

/// The inputs stoke reads itself, on the device. Predict, serve and ONNX export build them
/// too, so a model that takes one of them can be used without the trainer.
// One per step, moved straight into `forward`: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Input {
    /// Normalised images, `[batch, channels, height, width]`.
    Images(Tensor<4>),
    /// Token ids `[batch, length]`, with `padding` true after each text's end.
    Tokens {
        ids: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
    },
    /// Language-model windows `[batch, length]`; one prediction per position.
    Sequences(Tensor<2, Int>),
    /// Table rows: standardised numeric features `[batch, numeric]` and category ids
    /// `[batch, categorical]` (0 for a value not seen in training).
    Rows {
        numeric: Tensor<2>,
        categorical: Tensor<2, Int>,
    },
}

impl Input {
    /// `self` with its float tensors in `dtype` (ids stay integers).
    pub fn autocast(self, dtype: FloatDType) -> Self {
        match self {
            Input::Images(images) => Input::Images(images.cast(dtype)),
            Input::Rows {
                numeric,
                categorical,
            } => Input::Rows {
                numeric: numeric.cast(dtype),
                categorical,
            },
            tokens => tokens,
        }
    }
}

/// What a built-in batch's predictions are scored against.
#[derive(Clone, Debug)]
pub enum Targets {
    /// One class per prediction row.
    Classes(Tensor<1, Int>),
    /// Standardised values `[rows, targets]`.
    Values(Tensor<2>),
    /// Each label present (1) or not (0), `[rows, labels]`.
    Labels(Tensor<2, Int>),
    /// A mixed batch (mixup, CutMix): each row's own class, its partner's, and the share
    /// `weight` of each input that is its own.
    Mixed {
        classes: Tensor<1, Int>,
        partners: Box<Tensor<1, Int>>,
        weight: f32,
    },
}

impl Targets {
    /// The model's scores `[rows, outputs]` set against these targets.
    pub fn scored(self, scores: Tensor<2>) -> Scored {
        match self {
            Targets::Classes(targets) => Scored::Classes {
                logits: scores,
                targets,
            },
            Targets::Values(targets) => Scored::Values {
                predicted: scores,
                targets,
            },
            Targets::Labels(targets) => Scored::Labels {
                logits: scores,
                targets,
            },
            Targets::Mixed {
                classes,
                partners,
                weight,
            } => Scored::Mixed {
                logits: scores,
                targets: classes,
                partners,
                weight,
            },
        }
    }

    /// Prediction rows.
    pub fn rows(&self) -> usize {
        match self {
            Targets::Classes(targets) => targets.dims()[0],
            Targets::Values(targets) => targets.dims()[0],
            Targets::Labels(targets) => targets.dims()[0],
            Targets::Mixed { classes, .. } => classes.dims()[0],
        }
    }
}

impl Batch for DeviceBatch {
    fn samples(&self) -> usize {
        self.samples
    }

    fn predictions(&self) -> usize {
        self.targets.rows()
    }

    fn tokens(&self) -> usize {
        self.tokens
    }

    fn autocast(self, dtype: FloatDType) -> Self {
        Self {
            input: self.input.autocast(dtype),
            ..self
        }
    }
}

impl DeviceBatch {
    /// A host batch moved onto `device`.
    pub fn new(batch: HostBatch, device: &Device) -> Self {
        let (samples, tokens) = (batch.size(), batch.tokens());
        let (input, targets) = match batch {
            HostBatch::Images {
                pixels,
                shape,
                labels,
                mixed,
            } => {
                let classes = ints(labels, [samples], device);
                let targets = match mixed {
                    Some(mixed) => Targets::Mixed {
                        classes,
                        partners: Box::new(ints(mixed.partners, [samples], device)),
                        weight: mixed.weight,
                    },
                    None => Targets::Classes(classes),
                };
                let images = Tensor::from_data(TensorData::new(pixels, shape), device);
                (Input::Images(images), targets)
            }
            HostBatch::Tokens {
                ids,
                shape,
                lengths,
                labels,
            } => {
                let padding: Vec<bool> = lengths
                    .iter()
                    .flat_map(|&length| (0..shape[1]).map(move |position| position >= length))
                    .collect();
                let input = Input::Tokens {
                    ids: ints(ids, shape, device),
                    padding: Tensor::from_data(TensorData::new(padding, shape), device),
                };
                (input, Targets::Classes(ints(labels, [samples], device)))
            }
            HostBatch::Sequences {
                inputs,
                targets,
                shape,
            } => (
                Input::Sequences(ints(inputs, shape, device)),
                Targets::Classes(ints(targets, [shape[0] * shape[1]], device)),
            ),
            HostBatch::Rows {
                numeric,
                numeric_width,
                categorical,
                categorical_width,
                targets,
            } => {
                let input = Input::Rows {
                    numeric: Tensor::from_data(
                        TensorData::new(numeric, [samples, numeric_width]),
                        device,
                    ),
                    categorical: ints(categorical, [samples, categorical_width], device),
                };
                let targets = match targets {
                    super::RowTargets::Classes(classes) => {
                        Targets::Classes(ints(classes, [samples], device))
                    }
                    super::RowTargets::Values { values, width } => Targets::Values(
                        Tensor::from_data(TensorData::new(values, [samples, width]), device),
                    ),
                    super::RowTargets::Labels { present, width } => {
                        Targets::Labels(ints(present, [samples, width], device))
                    }
                };
                (input, targets)
            }
        };
        Self {
            input,
            targets,
            samples,
            tokens,
        }
    }
}

fn ints<const D: usize>(values: Vec<i64>, shape: [usize; D], device: &Device) -> Tensor<D, Int> {
    Tensor::from_data(TensorData::new(values, shape), device)
}
