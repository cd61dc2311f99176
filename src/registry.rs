//! The kinds a binary knows by name: the model kinds (`[model] kind`) and the data kinds
//! (`[data] dataset`). The stock binary knows the built-in ones; a user's binary adds its own
//! through `Cli::with_builtins().model::<M>().data::<D>()`, and the registry is installed once,
//! before any config is read. Everything that turns a name into a model or a dataset asks
//! here, so the loop, evaluation, export and serving name no kind.
//!
//! To add a built-in kind: implement [`Model`] (or the built-in data loader) in its own file
//! and add one line to [`Registry::builtins`].

use std::collections::BTreeMap;
use std::sync::OnceLock;

use burn::prelude::Device;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::config::{DataConfig, DatasetKind, ModelConfig};
use crate::data::{Data, DataError, DataSpec, Splits};
use crate::model::{self, FromData, Model};
use crate::train::net::{Held, Net};

/// One problem with a kind's keys: the key (under `model.` or `data.`), what is wrong, and a
/// hint (the closest valid key).
pub type KeyIssue = (String, String, Option<String>);

/// Builds a kind's model for a config and data spec on a device.
type Build = fn(&ModelConfig, &DataSpec, &Device) -> Result<Box<dyn Net>, Error>;

/// A model kind: how to read its keys and build it.
#[derive(Clone, Copy)]
pub struct ModelKind {
    pub name: &'static str,
    resolve: fn(&toml::Table) -> Result<toml::Table, Vec<KeyIssue>>,
    check: fn(&toml::Table) -> Vec<KeyIssue>,
    build: Build,
    /// Parameter prefixes a start from weights trained on other outputs leaves fresh.
    pub head: fn() -> &'static [&'static str],
}

/// A data kind a user registered: how to read its keys and load it. (The built-in kinds
/// are read by `data::load_splits`; [`load_data`] reads either.)
#[derive(Clone, Copy)]
pub struct DataKind {
    pub name: &'static str,
    resolve: fn(&toml::Table) -> Result<toml::Table, Vec<KeyIssue>>,
    load: fn(&DataConfig, u64) -> Result<Splits, Error>,
}

/// The kinds this binary knows.
#[derive(Clone, Default)]
pub struct Registry {
    models: BTreeMap<&'static str, ModelKind>,
    data: BTreeMap<&'static str, DataKind>,
}

impl Registry {
    /// The kinds the stock `stoke` binary knows.
    pub fn builtins() -> Self {
        let mut registry = Self::default();
        registry.add_model::<model::Mlp>();
        registry.add_model::<model::Cnn>();
        registry.add_model::<model::Resnet>();
        registry.add_model::<model::TextClassifier>();
        registry.add_model::<model::LanguageModel>();
        registry.add_model::<model::Bert>();
        registry.add_model::<model::Gpt2>();
        registry.add_model::<model::TabularMlp>();
        registry.add_model::<model::TimmResnet>();
        registry.add_model::<model::TimmVit>();
        registry.add_model::<model::TimmConvnext>();
        registry.add_model::<model::EfficientNetLite>();
        registry
    }

    fn add_model<M: Model>(&mut self) {
        self.models.insert(
            M::KIND,
            ModelKind {
                name: M::KIND,
                resolve: resolve_settings::<M::Config>,
                check: check::<M>,
                build: build::<M>,
                head: M::head,
            },
        );
    }

    /// Adds a user's model kind; a name already taken (by a built-in kind or another) is
    /// refused with both.
    pub fn model<M: Model>(&mut self) -> Result<(), String> {
        if self.models.contains_key(M::KIND) {
            return Err(format!(
                "model kind \"{}\" ({}) is already registered; give it another KIND",
                M::KIND,
                std::any::type_name::<M>()
            ));
        }
        self.add_model::<M>();
        Ok(())
    }

    /// Adds a user's data kind; a name already taken is refused.
    pub fn data<D: Data>(&mut self) -> Result<(), String> {
        let taken = DatasetKind::BUILT_IN
            .iter()
            .any(|kind| kind.name() == D::KIND)
            || self.data.contains_key(D::KIND);
        if taken {
            return Err(format!(
                "data kind \"{}\" ({}) is already registered; give it another KIND",
                D::KIND,
                std::any::type_name::<D>()
            ));
        }
        self.data.insert(
            D::KIND,
            DataKind {
                name: D::KIND,
                resolve: resolve_settings::<D::Config>,
                load: load::<D>,
            },
        );
        Ok(())
    }

    /// The model kind `name`, or an error listing the kinds this binary knows.
    pub fn model_kind(&self, name: &str) -> Result<&ModelKind, String> {
        self.models.get(name).ok_or_else(|| {
            unknown_kind(
                "model kind",
                name,
                self.models.keys().copied().collect::<Vec<_>>(),
            )
        })
    }

    /// The user's data kind `name`, or an error listing the kinds this binary knows.
    pub fn data_kind(&self, name: &str) -> Result<&DataKind, String> {
        self.data.get(name).ok_or_else(|| {
            let mut known: Vec<&str> = DatasetKind::BUILT_IN.iter().map(|k| k.name()).collect();
            known.extend(self.data.keys().copied());
            unknown_kind("data kind", name, known)
        })
    }

    pub fn model_names(&self) -> Vec<&'static str> {
        self.models.keys().copied().collect()
    }

    pub fn data_names(&self) -> Vec<&'static str> {
        self.data.keys().copied().collect()
    }
}

/// A kind this binary does not know: the message says which it knows, and that a run or
/// artifact of an unknown kind was trained by another binary.
fn unknown_kind(what: &str, name: &str, known: Vec<&str>) -> String {
    format!(
        "this binary has no {what} \"{name}\" (it knows {}); a run or artifact of that kind was trained by another binary, which registers it",
        known.join(", ")
    )
}

impl ModelKind {
    /// The model `config` describes for data `spec`, with fresh weights on `device`.
    pub fn build(
        &self,
        config: &ModelConfig,
        spec: &DataSpec,
        device: &Device,
    ) -> Result<Box<dyn Net>, Error> {
        (self.build)(config, spec, device)
    }

    /// The kind's keys checked and completed with their defaults.
    pub fn resolve(&self, settings: &toml::Table) -> Result<toml::Table, Vec<KeyIssue>> {
        (self.resolve)(settings)
    }
}

impl DataKind {
    pub fn resolve(&self, settings: &toml::Table) -> Result<toml::Table, Vec<KeyIssue>> {
        (self.resolve)(settings)
    }

    pub fn load(&self, config: &DataConfig, seed: u64) -> Result<Splits, Error> {
        (self.load)(config, seed)
    }
}

static INSTALLED: OnceLock<Registry> = OnceLock::new();

/// The kinds of this binary: what [`install`] set, else the built-in ones.
pub fn registry() -> &'static Registry {
    INSTALLED.get_or_init(Registry::builtins)
}

/// Makes `registry` the one every command reads; only before anything has read it.
pub fn install(registry: Registry) -> Result<(), String> {
    INSTALLED
        .set(registry)
        .map_err(|_| "the kinds are already installed".to_string())
}

fn build<M: Model>(
    config: &ModelConfig,
    spec: &DataSpec,
    device: &Device,
) -> Result<Box<dyn Net>, Error> {
    let failed = |detail: String| {
        Error::Model(model::ModelError::Build {
            kind: M::KIND.to_string(),
            detail,
        })
    };
    let settings: M::Config = config.settings().map_err(failed)?;
    let spec = M::Spec::from_data(spec).map_err(failed)?;
    let model = M::new(&settings, &spec, device).map_err(failed)?;
    Ok(Box::new(Held::new(model)))
}

fn load<D: Data>(config: &DataConfig, seed: u64) -> Result<Splits, Error> {
    let settings: D::Config = toml::Value::Table(config.settings.clone())
        .try_into()
        .map_err(|err: toml::de::Error| {
            Error::Data(DataError::Corrupt {
                path: config.path.clone(),
                detail: format!("[data] of kind \"{}\": {}", D::KIND, err.message()),
            })
        })?;
    Ok(crate::data::load_custom::<D>(config, &settings, seed)?)
}

/// Reads `settings` as `C`, refusing keys `C` does not have, then writes `C` back: the keys
/// completed with their defaults. Each problem names its key (relative to the table).
fn resolve_settings<C: Serialize + DeserializeOwned>(
    settings: &toml::Table,
) -> Result<toml::Table, Vec<KeyIssue>> {
    if let Some(fields) = field_names::<C>() {
        let unknown: Vec<KeyIssue> = settings
            .keys()
            .filter(|key| !fields.contains(&key.as_str()))
            .map(|key| {
                let hint = match crate::config::did_you_mean(key, fields.iter().copied()) {
                    Some(close) => {
                        format!("did you mean `{close}`? valid keys: {}", fields.join(", "))
                    }
                    None if fields.is_empty() => "this kind takes no keys".into(),
                    None => format!("valid keys: {}", fields.join(", ")),
                };
                (key.clone(), format!("unknown key `{key}`"), Some(hint))
            })
            .collect();
        if !unknown.is_empty() {
            return Err(unknown);
        }
    }
    let typed: C =
        serde_path_to_error::deserialize(toml::Value::Table(settings.clone())).map_err(|err| {
            let key = err.path().to_string();
            let key = if key == "." { String::new() } else { key };
            let message = crate::config::humanize_serde_message(err.inner().message().trim());
            vec![(key, message, None)]
        })?;
    Ok(toml::Table::try_from(&typed).expect("a kind's config serializes to TOML"))
}

/// The keys a serde struct takes, as its derived `Deserialize` names them; `None` where it
/// does not say (a map, or a struct with flattened fields).
fn field_names<C: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let mut probe = FieldProbe(None);
    let _ = C::deserialize(&mut probe);
    probe.0
}

/// A deserializer that only notes the field names a struct asks for, then gives up.
struct FieldProbe(Option<&'static [&'static str]>);

impl<'de> serde::Deserializer<'de> for &mut FieldProbe {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("probe"))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = Some(fields);
        Err(serde::de::Error::custom("probe"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Checks and completes `model`'s kind keys and, for a user's data kind, `data`'s; each
/// problem with its full key.
pub fn resolve_kinds(model: &mut ModelConfig, data: &mut DataConfig) -> Result<(), Vec<KeyIssue>> {
    let registry = registry();
    let mut issues = Vec::new();
    match registry.model_kind(&model.kind) {
        Ok(kind) => match kind.resolve(&model.settings) {
            Ok(settings) => {
                model.settings = settings;
                if let Err(problems) = kind.check(model) {
                    issues.extend(problems);
                }
            }
            Err(problems) => issues.extend(prefixed(
                "model",
                &format!("[model] with kind = \"{}\"", model.kind),
                problems,
            )),
        },
        Err(message) => issues.push(("model.kind".into(), message, None)),
    }
    let model_known = registry.model_kind(&model.kind).is_ok();
    match &data.dataset {
        // A run of another binary's kinds is refused once, by its model kind.
        DatasetKind::Custom(_) if !model_known => {}
        DatasetKind::Custom(name) => match registry.data_kind(name) {
            Ok(kind) => match kind.resolve(&data.settings) {
                Ok(settings) => data.settings = settings,
                Err(problems) => issues.extend(prefixed(
                    "data",
                    &format!("[data] with dataset = \"{name}\""),
                    problems,
                )),
            },
            Err(message) => issues.push(("data.dataset".into(), message, None)),
        },
        builtin => {
            // The built-in kinds' keys are `DataConfig`'s own: anything left over is unknown.
            for key in data.settings.keys() {
                let hint = match crate::config::did_you_mean(key, DATA_KEYS.iter().copied()) {
                    Some(close) => format!(
                        "did you mean `{close}`? valid keys: {}",
                        DATA_KEYS.join(", ")
                    ),
                    None => format!("valid keys: {}", DATA_KEYS.join(", ")),
                };
                issues.push((
                    format!("data.{key}"),
                    format!(
                        "unknown key `{key}` in [data] with dataset = \"{}\"",
                        builtin.name()
                    ),
                    Some(hint),
                ));
            }
        }
    }
    match issues.is_empty() {
        true => Ok(()),
        false => Err(issues),
    }
}

/// The keys of `[data]` for the built-in kinds.
const DATA_KEYS: [&str; 14] = [
    "dataset",
    "path",
    "valid_fraction",
    "test_fraction",
    "limit",
    "on_error",
    "workers",
    "prefetch",
    "memory_budget",
    "shuffle_buffer",
    "image",
    "text",
    "tokenizer",
    "tabular",
];

/// `problems` with their keys under `table` and their unknown keys placed in `scope`.
fn prefixed(table: &str, scope: &str, problems: Vec<KeyIssue>) -> Vec<KeyIssue> {
    problems
        .into_iter()
        .map(|(key, message, hint)| {
            let message = match message.starts_with("unknown key") {
                true => format!("{message} in {scope}"),
                false => message,
            };
            let key = match key.is_empty() {
                true => table.to_string(),
                false => format!("{table}.{key}"),
            };
            (key, message, hint)
        })
        .collect()
}

impl ModelKind {
    /// The kind's own range checks, on keys already read.
    fn check(&self, config: &ModelConfig) -> Result<(), Vec<KeyIssue>> {
        let problems = (self.check)(&config.settings);
        match problems.is_empty() {
            true => Ok(()),
            false => Err(problems),
        }
    }
}

fn check<M: Model>(settings: &toml::Table) -> Vec<KeyIssue> {
    let Ok(config) = toml::Value::Table(settings.clone()).try_into::<M::Config>() else {
        return Vec::new(); // resolve_settings has said what is wrong
    };
    M::check(&config)
        .into_iter()
        .map(|(key, message)| (format!("model.{key}"), message, None))
        .collect()
}

/// Loads the data `config` names: a user's kind through its registration, a built-in one
/// through `data::load_splits` (a text dataset with `tokenizer` when given).
pub fn load_data(
    config: &DataConfig,
    seed: u64,
    tokenizer: Option<crate::data::Tokenizer>,
) -> Result<Splits, Error> {
    match &config.dataset {
        DatasetKind::Custom(name) => registry()
            .data_kind(name)
            .map_err(Error::Usage)?
            .load(config, seed),
        _ => Ok(crate::data::load_splits(config, seed, tokenizer)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_whose_name_is_taken_is_refused() {
        let mut registry = Registry::builtins();
        let err = registry.model::<model::Mlp>().unwrap_err();
        assert!(
            err.contains("\"mlp\"") && err.contains("already registered"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_of_a_kind_name_the_closest_one() {
        let mut settings = toml::Table::new();
        settings.insert("hiden".into(), toml::Value::Integer(3));
        let issues = resolve_settings::<crate::config::CnnConfig>(&settings).unwrap_err();
        let (key, message, hint) = &issues[0];
        assert_eq!(key, "hiden");
        assert_eq!(message, "unknown key `hiden`");
        assert!(hint.as_deref().unwrap().contains("did you mean `hidden`?"));
        // Keys left out take their defaults.
        let resolved = resolve_settings::<crate::config::CnnConfig>(&toml::Table::new()).unwrap();
        assert_eq!(resolved["hidden"].as_integer(), Some(128));
    }
}
