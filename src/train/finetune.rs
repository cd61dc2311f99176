//! What a fine-tuning run changes in training: parameters frozen by name prefix
//! (`model.freeze`: they take no gradient, so backward passes skip them and the optimizer never
//! moves them) and learning rates of their own per prefix (`model.lr_by_prefix`, each following
//! the run's schedule from its own base rate).
//!
//! A prefix names parameters by stoke's module path, whole segments at a time: "embeddings"
//! is `embeddings.*`, "layers.0" is `layers.0.*` but not `layers.01.*`.

use std::collections::{BTreeMap, HashSet};

use burn::module::{Module, ModuleMapper, Param, ParamGroup, ParamId};
use burn::prelude::*;
use burn::store::ModuleSnapshot;

use crate::Error;
use crate::config::ModelConfig;
use crate::train::Net;

/// True when `path` lies under `prefix`, whole segments at a time.
fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The group of parameters under `prefix`, as burn's optimizer sees their paths (which may
/// begin with the `Model` variant's name).
pub fn group(prefix: &str) -> ParamGroup {
    let escaped = prefix.replace('.', r"\.");
    ParamGroup::from_regex(format!(r"^([A-Z][A-Za-z0-9]*\.)?{escaped}(\.|$)"))
        .expect("prefixes are validated as names and dots")
}

/// Sets `require_grad = false` on the parameters whose ids it holds.
struct Freezer(HashSet<ParamId>);

impl ModuleMapper for Freezer {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.0.contains(&param.id) {
            true => param.set_require_grad(false),
            false => param,
        }
    }
}

/// Every float parameter's path (burn-store's) and id.
fn parameters<M: Module>(model: &M) -> Vec<(String, ParamId)> {
    model
        .collect(None, None, true)
        .into_iter()
        .filter_map(|tensor| Some((tensor.name.clone(), ParamId::from(tensor.param_id?))))
        .collect()
}

/// Refuses a `model.freeze` or `model.lr_by_prefix` prefix that matches no parameter, naming
/// the model's top-level modules.
pub fn check_prefixes(model: &dyn Net, config: &ModelConfig) -> Result<(), Error> {
    let paths: Vec<String> = model
        .parameter_ids()
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    let keyed = config
        .freeze
        .iter()
        .map(|prefix| ("model.freeze", prefix))
        .chain(
            config
                .lr_by_prefix
                .keys()
                .map(|prefix| ("model.lr_by_prefix", prefix)),
        );
    for (key, prefix) in keyed {
        if !paths.iter().any(|path| under(path, prefix)) {
            let mut top: Vec<&str> = paths
                .iter()
                .filter_map(|path| path.split('.').next())
                .collect();
            top.dedup();
            return Err(Error::Usage(format!(
                "{key}: \"{prefix}\" names no parameter of this {} model; its parameters are under {}",
                config.kind(),
                top.join(", ")
            )));
        }
    }
    Ok(())
}

/// `model` with the parameters under `model.freeze` taking no gradient; says how many.
pub fn freeze<M: Module>(model: M, config: &ModelConfig) -> M {
    if config.freeze.is_empty() {
        return model;
    }
    let frozen: HashSet<ParamId> = parameters(&model)
        .into_iter()
        .filter(|(path, _)| config.freeze.iter().any(|prefix| under(path, prefix)))
        .map(|(_, id)| id)
        .collect();
    eprintln!(
        "model.freeze: {} parameter tensors under {} are frozen",
        frozen.len(),
        config.freeze.join(", ")
    );
    model.map(&mut Freezer(frozen))
}

/// `model.lr_by_prefix` as (group, base learning rate) pairs, in key order.
pub fn lr_groups(lr_by_prefix: &BTreeMap<String, f64>) -> Vec<(ParamGroup, f64)> {
    lr_by_prefix
        .iter()
        .map(|(prefix, lr)| (group(prefix), *lr))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_take_whole_segments() {
        assert!(under("layers.0.attention.query.weight", "layers.0"));
        assert!(!under("layers.01.attention.query.weight", "layers.0"));
        assert!(under("classifier.bias", "classifier"));
        assert!(!under("classifier_extra.bias", "classifier"));
        let group = group("layers.0");
        let id = burn::module::ParamId::new();
        assert!(group.matches(&id, Some("Bert.layers.0.attention.query.weight")));
        assert!(group.matches(&id, Some("layers.0.attention.query.weight")));
        assert!(!group.matches(&id, Some("Bert.layers.01.attention.query.weight")));
    }
}
