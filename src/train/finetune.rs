//! What a fine-tuning run changes in training: parameters frozen by name prefix
//! (`model.freeze`: they take no gradient, so backward passes skip them and the optimizer never
//! moves them) and learning rates of their own per prefix (`model.lr_by_prefix`, each following
//! the run's schedule from its own base rate).
//!
//! A prefix names parameters by stoke's module path, whole segments at a time: "embeddings"
//! is `embeddings.*`, "layers.0" is `layers.0.*` but not `layers.01.*`.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamGroup};
use burn::prelude::*;

use crate::Error;
use crate::config::ModelConfig;
use crate::model::Model;

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

/// Module paths of parameters, without the `Model` enum's variant.
#[derive(Default)]
struct Paths {
    stack: Vec<String>,
}

impl Paths {
    fn enter(&mut self, name: &str, container: &str) {
        if !container.starts_with("Enum:") {
            self.stack.push(name.to_string());
        }
    }

    fn exit(&mut self, container: &str) {
        if !container.starts_with("Enum:") {
            self.stack.pop();
        }
    }

    fn current(&self) -> String {
        self.stack.join(".")
    }
}

struct Freezer<'a> {
    paths: Paths,
    prefixes: &'a [String],
    frozen: usize,
}

impl ModuleMapper for Freezer<'_> {
    fn enter_module(&mut self, name: &str, container: &str) {
        self.paths.enter(name, container);
    }

    fn exit_module(&mut self, _name: &str, container: &str) {
        self.paths.exit(container);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.paths.current();
        match self.prefixes.iter().any(|prefix| under(&path, prefix)) {
            true => {
                self.frozen += 1;
                param.set_require_grad(false)
            }
            false => param,
        }
    }
}

struct Names {
    paths: Paths,
    all: Vec<String>,
}

impl ModuleVisitor for Names {
    fn enter_module(&mut self, name: &str, container: &str) {
        self.paths.enter(name, container);
    }

    fn exit_module(&mut self, _name: &str, container: &str) {
        self.paths.exit(container);
    }

    fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
        self.all.push(self.paths.current());
    }
}

/// Every float parameter's path in `model`, in module order.
pub fn parameter_paths(model: &Model) -> Vec<String> {
    let mut names = Names {
        paths: Paths::default(),
        all: Vec::new(),
    };
    model.visit(&mut names);
    names.all
}

/// Refuses a `model.freeze` or `model.lr_by_prefix` prefix that matches no parameter, naming
/// the model's top-level modules.
pub fn check_prefixes(model: &Model, config: &ModelConfig) -> Result<(), Error> {
    let paths = parameter_paths(model);
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
pub fn freeze(model: Model, config: &ModelConfig) -> Model {
    if config.freeze.is_empty() {
        return model;
    }
    let mut freezer = Freezer {
        paths: Paths::default(),
        prefixes: &config.freeze,
        frozen: 0,
    };
    let model = model.map(&mut freezer);
    eprintln!(
        "model.freeze: {} parameter tensors under {} are frozen",
        freezer.frozen,
        config.freeze.join(", ")
    );
    model
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
