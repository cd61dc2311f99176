//! Weights of other libraries, for whoever needs them: training (a start from pretrained
//! weights, `train::init`) and using models (Hugging Face and timm exports) both come here.
//! It owns how weights are named and matched: a Hugging Face folder's tensors under stoke's
//! parameter names (`hf.rs`, `names.rs`), a timm folder's (`timm.rs`), and tensors applied to
//! a model by name and shape with a clear refusal for anything that does not fit (here).
//! Checkpoints are `run::checkpoint`'s.

pub mod hf;
pub mod hf_vision;
mod names;
pub mod timm;
pub mod timm_export;

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::store::{ModuleSnapshot, bridge};

use crate::Error;

/// A tensor under the stoke parameter path it belongs to.
pub struct NamedTensor {
    pub path: String,
    pub data: TensorData,
}

/// What applying a source's tensors to a model did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Parameters set from the source.
    pub applied: usize,
    /// Head parameters the source lacks or has in another shape: initialised fresh.
    pub fresh: Vec<String>,
}

/// Every parameter of `module` by path, as f32 data on the host.
pub fn parameters<M: Module>(module: &M) -> BTreeMap<String, TensorData> {
    module
        .collect(None, None, true)
        .into_iter()
        .map(|tensor| {
            let data = bridge::to_data(&tensor).expect("a parameter reads back from its device");
            (tensor.name.clone(), data.convert::<f32>())
        })
        .collect()
}

/// Every parameter of `module`: its path and shape.
pub fn parameter_shapes<M: Module>(module: &M) -> BTreeMap<String, Vec<usize>> {
    module
        .collect(None, None, true)
        .into_iter()
        .map(|tensor| (tensor.name.clone(), tensor.shape.to_vec()))
        .collect()
}

/// Sets `module`'s parameters from `tensors`, matched by path and shape.
///
/// Parameters under a `head` prefix (a classifier for another set of classes, a pooler) may
/// be missing from the source or have another shape: they keep their fresh initialisation and
/// are listed in [`Applied::fresh`]. Any other missing, extra or mis-shaped tensor refuses the
/// whole source, naming it, before anything is changed.
pub fn apply<M: Module>(
    module: M,
    tensors: Vec<NamedTensor>,
    head: &[&str],
    source: &Path,
) -> Result<(M, Applied), Error> {
    let refuse = |detail: String| Error::Pretrained {
        from: source.to_path_buf(),
        detail,
    };
    let is_head = |path: &str| {
        head.iter()
            .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}.")))
    };
    let expected = parameter_shapes(&module);
    let mut applied = Applied::default();
    let mut kept = Vec::with_capacity(tensors.len());
    let mut extra = Vec::new();
    for tensor in tensors {
        let shape = tensor.data.shape().to_vec();
        match expected.get(&tensor.path) {
            None => extra.push(tensor.path),
            Some(wanted) if *wanted == shape => kept.push(tensor),
            Some(_) if is_head(&tensor.path) => applied.fresh.push(tensor.path),
            Some(wanted) => {
                return Err(refuse(format!(
                    "tensor {} has shape {shape:?} there, but the model's is {wanted:?}",
                    tensor.path
                )));
            }
        }
    }
    if let Some(first) = extra.first() {
        return Err(refuse(format!(
            "it holds {} tensor{} this model has no place for, first {first}",
            extra.len(),
            if extra.len() == 1 { "" } else { "s" },
        )));
    }
    let provided: std::collections::BTreeSet<&str> =
        kept.iter().map(|tensor| tensor.path.as_str()).collect();
    let missing: Vec<&String> = expected
        .keys()
        .filter(|path| !provided.contains(path.as_str()) && !applied.fresh.contains(path))
        .collect();
    let (head_missing, body_missing): (Vec<&String>, Vec<&String>) =
        missing.into_iter().partition(|path| is_head(path));
    if let Some(first) = body_missing.first() {
        return Err(refuse(format!(
            "it lacks {} tensor{} the model needs, first {first}",
            body_missing.len(),
            if body_missing.len() == 1 { "" } else { "s" },
        )));
    }
    applied.fresh.extend(head_missing.into_iter().cloned());
    applied.fresh.sort();
    applied.applied = kept.len();
    let snapshots = kept
        .into_iter()
        .map(|tensor| bridge::from_data(tensor.data, tensor.path, None))
        .collect();
    let mut module = module;
    let result = module.apply(snapshots, None, None, true);
    if !result.errors.is_empty() {
        return Err(refuse(format!("{result}")));
    }
    Ok((module, applied))
}
