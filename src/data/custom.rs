//! A dataset kind of the user's own: the [`Data`] trait, and its adapter to the loop's
//! [`Dataset`]. stoke owns the order, the split into train/valid/test, each rank's share and
//! the position in the epoch, so exact resume and data parallel need nothing from the data;
//! the data says how many samples it has and how to batch any of them onto a device.
//!
//! [`BurnData`] lets a burn-dataset `Dataset` and `Batcher` plug in unchanged.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::batch::{AnyBatch, Batch, BatchContext};
use super::{DataError, DataSpec, Dataset, Skipped, Split, Splits, split_off};
use crate::config::{DataConfig, OnError};
use crate::task::TaskSpec;

/// What a user's data tells a model about itself, saved with every checkpoint and artifact:
/// shapes, feature and target names, anything the model is built from.
pub trait Spec:
    Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static
{
    /// The task the data's targets pose: stoke's loss and metrics follow from it.
    fn task(&self) -> TaskSpec;

    /// One line for people: what the data is.
    fn describe(&self) -> String;
}

/// The common `[data]` keys, as a user's data kind reads them.
#[derive(Debug, Clone)]
pub struct DataContext {
    /// `data.path`.
    pub path: PathBuf,
    pub seed: u64,
    /// `data.limit`: the most samples to read from each file (for smoke tests).
    pub limit: Option<usize>,
    /// `data.on_error`: whether a bad record stops the load or is counted in `skipped`.
    pub on_error: OnError,
}

impl DataContext {
    pub(crate) fn of(config: &DataConfig, seed: u64) -> Self {
        Self {
            path: config.path.clone(),
            seed,
            limit: config.limit,
            on_error: config.on_error,
        }
    }
}

/// A user's data, loaded: its training samples, its own validation and test samples if it
/// has them (else stoke holds out `data.valid_fraction` and `data.test_fraction` of the
/// training samples, seeded), and its spec.
pub struct Parts<D: Data> {
    pub train: D,
    pub valid: Option<D>,
    pub test: Option<D>,
    pub spec: D::Spec,
    /// Records passed over under `data.on_error = "skip"`.
    pub skipped: Skipped,
}

/// A dataset kind a user registers: read from its `[data]` keys, batched by index.
pub trait Data: Send + Sync + Sized + 'static {
    /// The kind's name in configs: `[data] dataset = "..."`.
    const KIND: &'static str;
    /// Its own keys in the `[data]` table (besides stoke's: path, fractions, limit, on_error,
    /// workers, prefetch, memory_budget), a serde struct.
    type Config: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static;
    /// What it tells the model.
    type Spec: Spec;
    /// The batch it makes: the model trained on it takes the same type.
    type Batch: Batch;

    /// Reads the data; a bad file or record is a [`DataError`] naming it.
    fn load(config: &Self::Config, context: &DataContext) -> Result<Parts<Self>, DataError>;

    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Samples `indices` (each below `len`) as one batch on `context.device`. Called on data
    /// worker threads, ahead of the step; draw per-sample randomness from
    /// `context.rng(index)` so that it is the same on every run and resume.
    fn batch(&self, indices: &[u32], context: &BatchContext) -> Self::Batch;
}

/// The loop's view of a user's data.
struct Adapter<D: Data>(D);

impl<D: Data> Dataset for Adapter<D> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn batch(&self, indices: &[u32], context: &BatchContext) -> AnyBatch {
        AnyBatch::new(self.0.batch(indices, context))
    }
}

/// Loads a user's data kind `D` and splits it as stoke splits every dataset.
pub(crate) fn load<D: Data>(
    config: &DataConfig,
    settings: &D::Config,
    seed: u64,
) -> Result<Splits, DataError> {
    let context = DataContext::of(config, seed);
    let parts = D::load(settings, &context)?;
    let train: Arc<dyn Dataset> = Arc::new(Adapter(parts.train));
    let all = (0..train.len() as u32).collect();
    let (rest, valid) = match parts.valid {
        Some(_) => (all, Vec::new()),
        None => split_off(all, config.valid_fraction, seed),
    };
    let (rest, test) = match parts.test {
        Some(_) => (rest, Vec::new()),
        None => split_off(rest, config.test_fraction, seed ^ super::TEST_SPLIT_SALT),
    };
    let own = |data: Option<D>, held_out: Vec<u32>| match data {
        Some(data) => Split::all(Arc::new(Adapter(data))),
        None => Split::new(train.clone(), held_out),
    };
    let valid = own(parts.valid, valid);
    let test = own(parts.test, test);
    Ok(Splits {
        train: Split::new(train.clone(), rest),
        valid,
        test,
        spec: DataSpec::custom(D::KIND, &parts.spec),
        tokenizer: None,
        skipped: parts.skipped,
        unseen_categories: Default::default(),
    })
}

/// A burn-dataset `Dataset` with its `Batcher`, as a [`Data`]'s samples: implement [`Data`]
/// for a type holding a `BurnData` and forward `len` and `batch` to it.
#[cfg(feature = "burn-dataset")]
pub struct BurnData<I, O> {
    dataset: Arc<dyn burn::data::dataset::Dataset<I>>,
    batcher: Arc<dyn burn::data::dataloader::batcher::Batcher<I, O>>,
}

#[cfg(feature = "burn-dataset")]
impl<I: Send + Sync + Clone + 'static, O> BurnData<I, O> {
    pub fn new(
        dataset: impl burn::data::dataset::Dataset<I> + 'static,
        batcher: impl burn::data::dataloader::batcher::Batcher<I, O> + 'static,
    ) -> Self {
        Self {
            dataset: Arc::new(dataset),
            batcher: Arc::new(batcher),
        }
    }

    pub fn len(&self) -> usize {
        self.dataset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dataset.is_empty()
    }

    /// The items `indices` names, batched by the batcher onto `context.device`.
    pub fn batch(&self, indices: &[u32], context: &BatchContext) -> O {
        let items = indices
            .iter()
            .map(|&index| {
                self.dataset
                    .get(index as usize)
                    .unwrap_or_else(|err| panic!("item {index} of the dataset: {err}"))
            })
            .collect();
        self.batcher.batch(items, &context.device)
    }
}

#[cfg(all(test, feature = "burn-dataset"))]
mod tests {
    use burn::data::dataloader::batcher::Batcher;
    use burn::data::dataset::InMemDataset;
    use burn::prelude::*;

    use super::*;

    /// Numbers batched into a column vector, as a burn Batcher does.
    struct Column;

    impl Batcher<f32, Tensor<2>> for Column {
        fn batch(&self, items: Vec<f32>, device: &Device) -> Tensor<2> {
            let rows = items.len();
            Tensor::from_data(TensorData::new(items, [rows, 1]), device)
        }
    }

    #[test]
    fn a_burn_dataset_and_batcher_batch_stokes_indices() {
        let data = BurnData::new(InMemDataset::new(vec![0.0f32, 1.0, 2.0, 3.0]), Column);
        let context = BatchContext {
            device: Device::flex(),
            seed: 0,
            epoch: Some(0),
        };
        assert_eq!(data.len(), 4);
        let batch = data.batch(&[3, 1], &context);
        assert_eq!(batch.to_data().to_vec::<f32>().unwrap(), vec![3.0, 1.0]);
    }
}
