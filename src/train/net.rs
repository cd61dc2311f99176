//! The loop's view of a model, whatever its kind: [`Net`], what training, evaluation,
//! checkpoints, exports and serving do with one. [`Held`] implements it for every [`Model`];
//! the registry builds one per kind, so the generic code below is compiled once per kind and
//! everything above it is not generic at all.

use std::any::Any;
use std::collections::BTreeMap;
use std::path::Path;

use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::store::{
    BurnToPyTorchAdapter, ModuleRecord, ModuleSnapshot, RecordError, SafetensorsStore,
};

use super::measure::RunningMetrics;
use super::step::{StepShare, Stepper};
use crate::Error;
use crate::config::ModelConfig;
use crate::data::{AnyBatch, Input};
use crate::model::{Model, ModelError, Recordable};
use crate::task::{Output, Task};
use crate::weights::{Applied, NamedTensor};

/// A model of some kind, as the loop and the commands use it.
pub trait Net: Send + Recordable {
    /// The kind's name (`[model] kind`).
    fn kind(&self) -> &'static str;

    /// One optimizer step on this process's `passes` of a step that `share` places among
    /// all the step's passes (see `Stepper::step`).
    fn step(
        &mut self,
        stepper: &mut Stepper,
        optimizer: &mut ModuleOptimizer,
        lr: ModuleLearningRate,
        passes: Vec<AnyBatch>,
        share: StepShare,
        metrics: &mut RunningMetrics,
    ) -> Result<(), Error>;

    /// The output on one batch, without gradients or dropout (call it on
    /// [`Net::for_evaluation`]'s copy).
    fn evaluate(&self, batch: AnyBatch, task: &Task) -> Result<Output, Error>;

    /// Scores `[rows, outputs]` for an input stoke reads itself; `None` when the model takes
    /// inputs of its own.
    fn scores(&self, input: Input) -> Option<Tensor<2>>;

    /// A copy that evaluates: dropout off, batch norm on its running statistics, on the
    /// device without autodiff.
    fn for_evaluation(&self) -> Box<dyn Net>;

    fn boxed_clone(&self) -> Box<dyn Net>;

    fn num_params(&self) -> usize;

    /// SHA-256 of every weight and buffer, in module order.
    fn weights_digest(&self) -> [u8; 32];

    /// Draws every lazily initialised parameter now, in module order, on the device it is on.
    fn initialize(&mut self);

    /// Moves the model onto `device`.
    fn to_device(&mut self, device: &Device);

    /// Tracks gradients for training (on an autodiff device), except for the parameters under
    /// `config.freeze`.
    fn train_mode(&mut self, config: &ModelConfig);

    /// Every parameter's path and id (burn-store's paths).
    fn parameter_ids(&self) -> Vec<(String, ParamId)>;

    /// Every parameter by path, as f32 data on the host.
    fn parameters(&self) -> BTreeMap<String, TensorData>;

    /// Sets parameters from `tensors` by path and shape, the kind's head allowed to stay
    /// fresh (see [`crate::weights::apply`]).
    fn apply(&mut self, tensors: Vec<NamedTensor>, source: &Path) -> Result<Applied, Error> {
        let head = self.head();
        self.apply_with_head(tensors, head, source)
    }

    /// [`Net::apply`] with the prefixes that may stay fresh given.
    fn apply_with_head(
        &mut self,
        tensors: Vec<NamedTensor>,
        head: &[&str],
        source: &Path,
    ) -> Result<Applied, Error>;

    /// The weights as safetensors in PyTorch's layout (`nn.Linear` transposed), with the
    /// kind in the metadata.
    fn safetensors(&self) -> Result<Vec<u8>, String>;

    /// The inference graph as ONNX, for a model over stoke's image input.
    fn onnx(&self, spec: &crate::data::DataSpec) -> Result<Vec<u8>, String>;

    /// Parameter prefixes a start from weights trained on other outputs leaves fresh.
    fn head(&self) -> &'static [&'static str];

    /// The model itself, for what only some kinds can do (ONNX export, Hugging Face
    /// folders): downcast to `Held<M>`.
    fn as_any(&self) -> &dyn Any;
}

/// A model of kind `M`.
#[derive(Clone)]
pub struct Held<M: Model> {
    pub model: M,
    /// Whether the model's output was checked once against the task and for gradients.
    checked: bool,
}

impl<M: Model> Held<M> {
    pub fn new(model: M) -> Self {
        Self {
            model,
            checked: false,
        }
    }

    /// `batch` as this model's batch type, or an error naming both.
    fn batch(batch: AnyBatch) -> Result<M::Batch, Error> {
        batch.take::<M::Batch>().map_err(|given| {
            output_error::<M>(format!(
                "it takes batches of {}, but the data gives {given}",
                std::any::type_name::<M::Batch>()
            ))
        })
    }
}

/// A model whose output the loop cannot use: a mistake in the model's code (exit 2).
fn output_error<M: Model>(detail: String) -> Error {
    Error::Model(ModelError::Output {
        kind: M::KIND.to_string(),
        detail,
    })
}

/// Checks a model's output once: one loss value, scored as the task reads.
pub(crate) fn check_output<M: Model>(output: &Output, task: &Task) -> Result<(), Error> {
    let dims = output.loss.dims();
    if dims != [1] {
        return Err(output_error::<M>(format!(
            "its loss has shape {dims:?}; a loss is one value (take its mean)"
        )));
    }
    task.check(&output.scored).map_err(output_error::<M>)
}

/// Refuses gradients that reach no parameter: a loss computed from the batch alone, or from
/// detached tensors.
pub(crate) fn check_gradients<M: Model>(parameters: usize) -> Result<(), Error> {
    match parameters {
        0 => Err(output_error::<M>(
            "its loss reaches no parameter: no gradient flows back into the model (is the loss computed from the model's outputs, undetached?)".into(),
        )),
        _ => Ok(()),
    }
}

impl<M: Model> Net for Held<M> {
    fn kind(&self) -> &'static str {
        M::KIND
    }

    fn step(
        &mut self,
        stepper: &mut Stepper,
        optimizer: &mut ModuleOptimizer,
        lr: ModuleLearningRate,
        passes: Vec<AnyBatch>,
        share: StepShare,
        metrics: &mut RunningMetrics,
    ) -> Result<(), Error> {
        let passes = passes
            .into_iter()
            .map(Self::batch)
            .collect::<Result<Vec<_>, _>>()?;
        let model = self.model.clone();
        self.model = stepper.step(model, optimizer, lr, passes, share, metrics, !self.checked)?;
        self.checked = true;
        Ok(())
    }

    fn evaluate(&self, batch: AnyBatch, task: &Task) -> Result<Output, Error> {
        let output = self.model.forward(Self::batch(batch)?, task);
        check_output::<M>(&output, task)?;
        Ok(output)
    }

    fn scores(&self, input: Input) -> Option<Tensor<2>> {
        self.model.scores(input)
    }

    fn for_evaluation(&self) -> Box<dyn Net> {
        Box::new(Held {
            model: self.model.valid(),
            checked: self.checked,
        })
    }

    fn boxed_clone(&self) -> Box<dyn Net> {
        Box::new(self.clone())
    }

    fn num_params(&self) -> usize {
        self.model.num_params()
    }

    fn weights_digest(&self) -> [u8; 32] {
        crate::model::weights_digest(&self.model)
    }

    fn initialize(&mut self) {
        self.model.visit(&mut InitialiseNow);
        self.model = self.model.clone().map(&mut PathIds::default());
    }

    fn to_device(&mut self, device: &Device) {
        self.model = self.model.clone().to_device(device);
    }

    fn train_mode(&mut self, config: &ModelConfig) {
        let model = self.model.clone().train();
        self.model = super::finetune::freeze(model, config);
    }

    fn parameter_ids(&self) -> Vec<(String, ParamId)> {
        self.model
            .collect(None, None, true)
            .into_iter()
            .filter_map(|tensor| Some((tensor.name.clone(), ParamId::from(tensor.param_id?))))
            .collect()
    }

    fn parameters(&self) -> BTreeMap<String, TensorData> {
        crate::weights::parameters(&self.model)
    }

    fn apply_with_head(
        &mut self,
        tensors: Vec<NamedTensor>,
        head: &[&str],
        source: &Path,
    ) -> Result<Applied, Error> {
        let (model, applied) = crate::weights::apply(self.model.clone(), tensors, head, source)?;
        self.model = model;
        Ok(applied)
    }

    fn safetensors(&self) -> Result<Vec<u8>, String> {
        let mut store = SafetensorsStore::from_bytes(None)
            .with_to_adapter(BurnToPyTorchAdapter)
            .skip_enum_variants(true)
            // transformers' loaders refuse a file whose `format` is not one of theirs ("pt"
            // for PyTorch tensors); burn writes "safetensors" by default.
            .metadata("format", "pt")
            .metadata("stoke_model", M::KIND);
        self.model
            .save_into(&mut store)
            .map_err(|err| err.to_string())?;
        canonical_header(store.get_bytes().map_err(|err| err.to_string())?)
    }

    fn onnx(&self, spec: &crate::data::DataSpec) -> Result<Vec<u8>, String> {
        crate::model::onnx::to_onnx(&self.model, spec)
    }

    fn head(&self) -> &'static [&'static str] {
        M::head()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl<M: Model> Recordable for Held<M> {
    fn record_bytes(&self) -> Result<Vec<u8>, RecordError> {
        // `valid()` folds pending running-statistic updates (batch norm) into the values the
        // record reads; without it a checkpoint would hold them one update behind.
        Ok(self.model.valid().into_record().into_bytes()?.to_vec())
    }

    fn load_record(&mut self, record: ModuleRecord) -> Result<(), RecordError> {
        self.model = self.model.clone().try_load_record(record)?;
        Ok(())
    }
}

/// A safetensors file with its header's keys sorted. burn writes `__metadata__` from a hash
/// map, in another order each time; sorted, the same weights are the same bytes, so an
/// artifact's version (their SHA-256) names the weights and not the export.
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let length = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or("a safetensors file shorter than its header length")?;
    let header: serde_json::Value = bytes
        .get(8..8 + length)
        .ok_or("a safetensors file shorter than its header")
        .and_then(|header| serde_json::from_slice(header).map_err(|_| "an unreadable header"))?;
    // serde_json's maps are ordered by key; the padding keeps the data 8-byte aligned.
    let mut text = serde_json::to_string(&header).expect("JSON serializes");
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text.into_bytes());
    out.extend(&bytes[8 + length..]);
    Ok(out)
}

struct InitialiseNow;

/// Gives every parameter an id made from its path in the model (the first 8 bytes of the
/// path's SHA-256), where burn draws ids at random: the records hold the ids, so the same
/// config and seed then write the same `model.bpk` and `optimizer.bpk`, byte for byte, and a
/// resumed run keeps them (loading a record takes its ids).
#[derive(Default)]
struct PathIds {
    path: Vec<String>,
}

impl PathIds {
    fn id(&self) -> ParamId {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.path.join(".").as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        ParamId::from(u64::from_le_bytes(first))
    }

    fn renamed<T: burn::module::Parameter>(&self, param: Param<T>) -> Param<T> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.id(), value, mapper)
    }
}

impl ModuleMapper for PathIds {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.renamed(param)
    }

    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        self.renamed(param)
    }

    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<D, Bool>>,
    ) -> Param<Tensor<D, Bool>> {
        self.renamed(param)
    }
}

impl ModuleVisitor for InitialiseNow {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::ModuleOptimizer;
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::config::TrainConfig;
    use crate::data::{DataSpec, DeviceBatch, Targets};
    use crate::task::{Scored, TaskConfig, TaskSpec};
    use crate::train::step::{StepShare, Stepper};

    /// What a faulty model of the test's does wrong.
    #[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
    struct Fault {
        mode: u8,
    }

    #[derive(Module, Debug)]
    struct Probe {
        layer: Linear,
        #[module(skip)]
        mode: u8,
    }

    impl Model for Probe {
        const KIND: &'static str = "probe";
        type Config = Fault;
        type Spec = DataSpec;
        type Batch = DeviceBatch;

        fn new(config: &Fault, _spec: &DataSpec, device: &Device) -> Result<Self, String> {
            Ok(Self {
                layer: LinearConfig::new(4, 2).init(device),
                mode: config.mode,
            })
        }

        fn forward(&self, batch: DeviceBatch, task: &Task) -> Output {
            let crate::data::Input::Rows { numeric, .. } = batch.input else {
                unreachable!("the test gives rows")
            };
            let logits = self.layer.forward(numeric);
            let Targets::Classes(targets) = batch.targets else {
                unreachable!("the test gives classes")
            };
            match self.mode {
                // A loss per row, not its mean.
                0 => Output::new(logits.sum_dim(1).squeeze_dim(1), Scored::Loss),
                // A loss that reaches no parameter.
                1 => Output::new(Tensor::from_floats([1.0], &logits.device()), Scored::Loss),
                // Values for a classification.
                2 => Output::new(
                    logits.clone().mean(),
                    Scored::Values {
                        predicted: logits.clone(),
                        targets: logits,
                    },
                ),
                _ => task.output(Scored::Classes { logits, targets }),
            }
        }
    }

    fn step(mode: u8) -> Result<(), Error> {
        let device = Device::flex().autodiff();
        let spec = TaskSpec::Classification {
            classes: vec!["a".into(), "b".into()],
        };
        let task = Task::new(spec, TaskConfig::default(), None).unwrap();
        let model = Probe::new(
            &Fault { mode },
            &DataSpec::LanguageModel {
                vocab_size: 2,
                context_length: 1,
                chars_per_token: 1.0,
            },
            &device,
        )
        .unwrap();
        let mut net: Box<dyn Net> = Box::new(Held::new(model));
        let batch = DeviceBatch::new(
            crate::data::HostBatch::Rows {
                numeric: vec![0.5; 12],
                numeric_width: 4,
                categorical: Vec::new(),
                categorical_width: 0,
                targets: crate::data::RowTargets::Classes(vec![0, 1, 0]),
            },
            &device,
        );
        let mut stepper = Stepper::new(&TrainConfig::default(), &task);
        let mut optimizer: ModuleOptimizer = burn::optim::SgdConfig::new().init();
        let mut metrics = RunningMetrics::new(&task);
        net.step(
            &mut stepper,
            &mut optimizer,
            0.1.into(),
            vec![AnyBatch::new(batch)],
            StepShare::alone(3),
            &mut metrics,
        )
    }

    #[test]
    fn a_models_faulty_output_is_refused_by_kind_at_its_first_step() {
        assert!(step(3).is_ok());
        for (mode, expected) in [
            (0, "its loss has shape [3]; a loss is one value"),
            (1, "its loss reaches no parameter"),
            (2, "scored as values, but the data's task is classification"),
        ] {
            let err = step(mode).expect_err("a faulty output");
            let message = err.to_string();
            assert!(
                message.starts_with("model kind \"probe\": ") && message.contains(expected),
                "{message}"
            );
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn parameter_ids_come_from_paths_unique_and_the_same_every_time() {
        let ids = || {
            let model = Probe::new(
                &Fault { mode: 3 },
                &DataSpec::LanguageModel {
                    vocab_size: 2,
                    context_length: 1,
                    chars_per_token: 1.0,
                },
                &Device::flex(),
            )
            .unwrap();
            let mut net: Box<dyn Net> = Box::new(Held::new(model));
            net.initialize();
            net.parameter_ids()
        };
        let first = ids();
        assert_eq!(first.len(), 2, "{first:?}");
        assert_ne!(first[0].1, first[1].1, "weight and bias: {first:?}");
        assert_eq!(first, ids());
    }
}
