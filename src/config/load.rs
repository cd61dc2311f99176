//! Reading a config: the TOML file, then `--set` overrides typed by the schema, then derived
//! defaults, then validation. Every error is located in the file or on the command line.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_path_to_error::Segment;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, Issue, Origin, did_you_mean, humanize_serde_message};
use super::schema::ExperimentConfig;
use super::validate::validate;

/// Loads `path`, applies `overrides` (each `KEY=VALUE`), fills derived defaults and validates.
pub fn load(path: &Path, overrides: &[String]) -> Result<ExperimentConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(path, &text, overrides)
}

/// [`load`] for config text already in memory; `path` names it in messages.
pub fn load_str(
    path: &Path,
    text: &str,
    overrides: &[String],
) -> Result<ExperimentConfig, ConfigError> {
    let source = Source::parse(path, text)?;
    let mut table: toml::Table = toml::from_str(text).map_err(|err| source.syntax_error(&err))?;
    fill_default_kinds(&mut table);
    let mut from_file = source.deserialize(&table, &[])?;
    source.resolve_kinds(&mut from_file, &[])?;

    // Overrides are typed by the values the file (with defaults) resolved to.
    let typed = toml::Value::try_from(&from_file).expect("the schema serializes to TOML");
    let overrides = overrides
        .iter()
        .map(|raw| Override::parse(raw))
        .collect::<Result<Vec<_>, _>>()?;
    for set in &overrides {
        set.apply(&mut table, &typed)?;
    }
    fill_default_kinds(&mut table);
    let mut config = source.deserialize(&table, &overrides)?;
    source.resolve_kinds(&mut config, &overrides)?;
    fill_derived_defaults(&mut config, path);
    let issues = validate(&config);
    if issues.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(
            issues
                .into_iter()
                .map(|(key, message)| Issue {
                    origin: source.origin_of(&key, &overrides),
                    key,
                    message,
                    hint: None,
                })
                .collect(),
        ))
    }
}

/// Renders a resolved config as the TOML written into run directories.
pub fn to_toml(config: &ExperimentConfig) -> String {
    toml::to_string_pretty(config).expect("the schema serializes to TOML")
}

/// A table selected by `kind` (model, optimizer, scheduler) written without its `kind` takes
/// the default kind, so `[optimizer]\nlr = 0.1` means the default optimizer with that lr.
fn fill_default_kinds(table: &mut toml::Table) {
    let defaults =
        toml::Table::try_from(ExperimentConfig::default()).expect("the schema serializes to TOML");
    for (section, default) in &defaults {
        let (Some(default_kind), Some(toml::Value::Table(written))) =
            (default.get("kind"), table.get_mut(section))
        else {
            continue;
        };
        if !written.contains_key("kind") {
            written.insert("kind".into(), default_kind.clone());
        }
    }
}

fn fill_derived_defaults(config: &mut ExperimentConfig, path: &Path) {
    if config.run.name.is_empty() {
        config.run.name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
    }
    if config.data.path.as_os_str().is_empty() && !config.data.dataset.needs_path() {
        config.data.path = PathBuf::from("datasets").join(config.data.dataset.name());
    }
}

/// The config file's text with the spans of its keys, to point errors at lines.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    document: DeTable<'a>,
}

impl<'a> Source<'a> {
    fn parse(path: &'a Path, text: &'a str) -> Result<Self, ConfigError> {
        let document = DeTable::parse(text).map_err(|err| Self::syntax_issue(path, text, &err))?;
        Ok(Self {
            path,
            text,
            document: document.into_inner(),
        })
    }

    fn syntax_issue(path: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
        let (line, column) = err
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((1, 1));
        ConfigError::issue(Issue {
            origin: Origin::File {
                path: path.to_path_buf(),
                line,
                column,
            },
            key: String::new(),
            message: format!("invalid TOML: {}", err.message().trim()),
            hint: None,
        })
    }

    fn syntax_error(&self, err: &toml::de::Error) -> ConfigError {
        Self::syntax_issue(self.path, self.text, err)
    }

    fn deserialize(
        &self,
        table: &toml::Table,
        overrides: &[Override],
    ) -> Result<ExperimentConfig, ConfigError> {
        serde_path_to_error::deserialize(toml::Value::Table(table.clone()))
            .map_err(|err| self.schema_error(&err, table, overrides))
    }

    fn schema_error(
        &self,
        err: &serde_path_to_error::Error<toml::de::Error>,
        table: &toml::Table,
        overrides: &[Override],
    ) -> ConfigError {
        let mut key: Vec<String> = err
            .path()
            .iter()
            .filter_map(|segment| match segment {
                Segment::Map { key } => Some(key.clone()),
                Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        let message = err.inner().message().trim().to_string();
        let (message, hint) = if let Some(unknown) = UnknownName::parse(&message) {
            // The path of an unknown key ends at its table or at the key itself.
            if unknown.is_field && key.last() != Some(&unknown.name) {
                key.push(unknown.name.clone());
            }
            let table_name = if key.len() > 1 {
                format!("[{}]", key[..key.len() - 1].join("."))
            } else {
                "the top level".to_string()
            };
            let kind = kind_of_table(table, &key[..key.len().saturating_sub(1)]);
            unknown.describe(&table_name, kind.as_deref())
        } else {
            (humanize_serde_message(&message), None)
        };
        let key = key.join(".");
        ConfigError::issue(Issue {
            origin: self.origin_of(&key, overrides),
            key,
            message,
            hint,
        })
    }

    /// Checks the model kind's keys (and a user data kind's) with the kind registered under
    /// its name, and completes them with their defaults.
    fn resolve_kinds(
        &self,
        config: &mut ExperimentConfig,
        overrides: &[Override],
    ) -> Result<(), ConfigError> {
        crate::registry::resolve_kinds(&mut config.model, &mut config.data).map_err(|issues| {
            ConfigError::Invalid(
                issues
                    .into_iter()
                    .map(|(key, message, hint)| Issue {
                        origin: self.origin_of(&key, overrides),
                        key,
                        message,
                        hint,
                    })
                    .collect(),
            )
        })
    }

    /// Where `key` was written: the last `--set` of it, else its line in the file.
    fn origin_of(&self, key: &str, overrides: &[Override]) -> Origin {
        if let Some(set) = overrides.iter().rev().find(|set| {
            set.key == key
                || key.starts_with(&format!("{}.", set.key))
                || set.key.starts_with(&format!("{key}."))
        }) {
            return Origin::Override(set.raw.clone());
        }
        match self.span_of(key) {
            Some(span) => {
                let (line, column) = line_column(self.text, span.start);
                Origin::File {
                    path: self.path.to_path_buf(),
                    line,
                    column,
                }
            }
            None => Origin::Default {
                path: self.path.to_path_buf(),
            },
        }
    }

    /// The span of the key `path` names (or of the deepest table on the way to it).
    fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let mut table = &self.document;
        let mut found = None;
        for part in path.split('.').filter(|part| !part.is_empty()) {
            let (key, value) = table.get_key_value(part)?;
            found = Some(key.span());
            match value.get_ref() {
                DeValue::Table(inner) => table = inner,
                _ => return found,
            }
        }
        found
    }
}

/// The `kind` a tagged table (model, optimizer, scheduler) selects, for messages.
fn kind_of_table(table: &toml::Table, path: &[String]) -> Option<String> {
    let mut current = table;
    for part in path {
        current = current.get(part)?.as_table()?;
    }
    current.get("kind")?.as_str().map(str::to_string)
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// serde's "unknown field `x`, expected one of `a`, `b`" and "unknown variant …", taken apart
/// so the message can suggest the closest valid name.
struct UnknownName {
    is_field: bool,
    name: String,
    expected: Vec<String>,
}

impl UnknownName {
    fn parse(message: &str) -> Option<Self> {
        let (is_field, rest) = if let Some(rest) = message.strip_prefix("unknown field `") {
            (true, rest)
        } else {
            (false, message.strip_prefix("unknown variant `")?)
        };
        let (name, tail) = rest.split_once('`')?;
        let expected = tail
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        Some(Self {
            is_field,
            name: name.to_string(),
            expected,
        })
    }

    fn describe(&self, table_name: &str, kind: Option<&str>) -> (String, Option<String>) {
        let valid = self.expected.join(", ");
        let suggestion = did_you_mean(&self.name, self.expected.iter().map(String::as_str));
        if self.is_field {
            let scope = match kind {
                Some(kind) => format!("{table_name} with kind = \"{kind}\""),
                None => table_name.to_string(),
            };
            let message = format!("unknown key `{}` in {scope}", self.name);
            let hint = match suggestion {
                Some(close) => format!("did you mean `{close}`? valid keys: {valid}"),
                None if valid.is_empty() => "this table takes no keys".to_string(),
                None => format!("valid keys: {valid}"),
            };
            (message, Some(hint))
        } else {
            let message = format!("unknown value \"{}\"", self.name);
            let hint = match suggestion {
                Some(close) => format!("did you mean \"{close}\"? valid values: {valid}"),
                None => format!("valid values: {valid}"),
            };
            (message, Some(hint))
        }
    }
}

/// One `--set KEY=VALUE`.
#[derive(Debug, Clone)]
struct Override {
    raw: String,
    key: String,
    value: String,
}

impl Override {
    fn parse(raw: &str) -> Result<Self, ConfigError> {
        let invalid = |message: &str| {
            ConfigError::issue(Issue {
                origin: Origin::Override(raw.to_string()),
                key: String::new(),
                message: message.to_string(),
                hint: Some(
                    "write it as --set section.key=value, e.g. --set optimizer.lr=5e-4".into(),
                ),
            })
        };
        let (key, value) = raw
            .split_once('=')
            .ok_or_else(|| invalid("expected KEY=VALUE"))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(invalid("the key is empty or has an empty part"));
        }
        Ok(Self {
            raw: raw.to_string(),
            key: key.to_string(),
            value: value.trim().to_string(),
        })
    }

    /// Sets the value into `table`, typed like the value `typed` holds at the same key.
    fn apply(&self, table: &mut toml::Table, typed: &toml::Value) -> Result<(), ConfigError> {
        let parts: Vec<&str> = self.key.split('.').collect();
        let expected = parts.iter().try_fold(typed, |value, part| value.get(part));
        let value = typed_value(&self.value, expected);

        let (last, parents) = parts.split_last().expect("the key has a part");
        let mut current = table;
        for (depth, part) in parents.iter().enumerate() {
            let entry = current
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            current = entry.as_table_mut().ok_or_else(|| {
                ConfigError::issue(Issue {
                    origin: Origin::Override(self.raw.clone()),
                    key: parts[..=depth].join("."),
                    message: "is a value, not a table, so it has no keys".into(),
                    hint: None,
                })
            })?;
        }
        current.insert(last.to_string(), value);
        Ok(())
    }
}

/// Parses an override's text as the schema expects at that key: text for strings, numbers for
/// numbers, TOML literals (arrays, booleans) otherwise. Keys the defaults leave empty, such as
/// optional values, take a TOML literal when the text is one and a string when it is not.
fn typed_value(raw: &str, expected: Option<&toml::Value>) -> toml::Value {
    let literal = toml::from_str::<toml::Table>(&format!("value = {raw}"))
        .ok()
        .and_then(|mut table| table.remove("value"));
    let unquoted = raw
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(raw);
    match (expected, literal) {
        (Some(toml::Value::String(_)), _) => toml::Value::String(unquoted.to_string()),
        (Some(toml::Value::Float(_)), Some(toml::Value::Integer(int))) => {
            toml::Value::Float(int as f64)
        }
        (_, Some(literal)) => literal,
        (_, None) => toml::Value::String(unquoted.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::OptimizerConfig;

    fn load_text(text: &str, overrides: &[&str]) -> Result<ExperimentConfig, ConfigError> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        load_str(Path::new("configs/test.toml"), text, &overrides)
    }

    fn single_issue(result: Result<ExperimentConfig, ConfigError>) -> Issue {
        let err = result.expect_err("the config should be rejected");
        assert_eq!(err.issues().len(), 1, "{err}");
        err.issues()[0].clone()
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let config = load_text("", &[]).unwrap();
        assert_eq!(config.run.name, "test");
        assert_eq!(config.data.path, PathBuf::from("datasets/mnist"));
        assert_eq!(config.train.epochs, 10);
        assert_eq!(config.model.kind, "mlp");
        assert_eq!(config.model.settings["hidden"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn unknown_key_names_line_column_and_closest_key() {
        let issue = single_issue(load_text(
            "[train]\nepochs = 2\n\n[optimizer]\nlrr = 0.1\n",
            &[],
        ));
        assert_eq!(issue.key, "optimizer.lrr");
        assert_eq!(
            issue.origin,
            Origin::File {
                path: "configs/test.toml".into(),
                line: 5,
                column: 1
            }
        );
        assert!(issue.hint.unwrap().contains("did you mean `lr`?"));
    }

    #[test]
    fn unknown_key_inside_a_tagged_table() {
        let issue = single_issue(load_text("[model]\nkind = \"cnn\"\nhiden = 3\n", &[]));
        assert_eq!(issue.key, "model.hiden");
        assert!(
            issue.message.contains("kind = \"cnn\""),
            "{}",
            issue.message
        );
        assert!(issue.hint.unwrap().contains("did you mean `hidden`?"));
    }

    #[test]
    fn unknown_variant_suggests_a_value() {
        let issue = single_issue(load_text("[optimizer]\nkind = \"adamm\"\n", &[]));
        assert!(issue.hint.unwrap().contains("did you mean \"adam\"?"));
    }

    #[test]
    fn overrides_are_typed_by_the_schema() {
        let config = load_text(
            "",
            &[
                "optimizer.lr=5e-4",
                "run.name=123",
                "train.epochs=1",
                "optimizer.epsilon=1",
            ],
        )
        .unwrap();
        assert_eq!(config.optimizer.lr(), 5e-4);
        assert_eq!(config.run.name, "123");
        assert_eq!(config.train.epochs, 1);
        match config.optimizer {
            OptimizerConfig::Adam(adam) => assert_eq!(adam.epsilon, 1.0),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn override_of_an_unknown_key_points_at_the_command_line() {
        let issue = single_issue(load_text("", &["train.epoch=3"]));
        assert_eq!(issue.origin, Origin::Override("train.epoch=3".into()));
        assert!(issue.hint.unwrap().contains("did you mean `epochs`?"));
    }

    #[test]
    fn wrong_type_says_what_was_expected() {
        let issue = single_issue(load_text("[train]\nbatch_size = \"big\"\n", &[]));
        assert_eq!(issue.key, "train.batch_size");
        assert!(
            issue.message.contains("expected a non-negative integer"),
            "{}",
            issue.message
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let issue = single_issue(load_text("[train\nepochs = 1\n", &[]));
        assert!(matches!(issue.origin, Origin::File { line: 1, .. }));
        assert!(issue.message.starts_with("invalid TOML"));
    }
}
