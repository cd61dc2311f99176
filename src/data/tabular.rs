//! Tables (`dataset = "tabular"`): rows of a CSV file (with a header row) or a Parquet file,
//! whose columns the config names as numeric features, categorical features and targets.
//!
//! Numeric features (and regression targets) are standardised with the mean and standard
//! deviation of the training split; each categorical column's values seen in training get
//! ids from 1, and a value seen only in validation, test or prediction gets id 0 (counted per
//! column). The statistics and vocabularies travel in the [`DataSpec`], so predictions read
//! rows exactly as training did. A missing or malformed value stops the load with its file
//! and line, or is skipped and counted with `data.on_error = "skip"`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::{
    CategoricalColumn, DataError, DataSpec, Dataset, HostBatch, NumericColumn, RowTargets, Samples,
    Skipped, Split, Splits, TEST_SPLIT_SALT, rows_of, split_off,
};
use crate::config::{DataConfig, OnError, TableFormat, TabularDataConfig, TabularTask};
use crate::task::{TargetScale, TaskSpec};

/// The split a row is assigned to by `split_column`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowSplit {
    Train,
    Valid,
    Test,
}

/// What a table's rows were read as, before standardisation: one per row kept.
struct RawRows {
    /// Each kept row's split, when the table assigns them (`split_column`).
    splits: Option<Vec<RowSplit>>,
    /// `[rows, numeric]`.
    numeric: Vec<f64>,
    /// `[rows, categorical]`.
    categorical: Vec<String>,
    targets: RawTargets,
    /// Each kept row's 1-based line (CSV) or row number (Parquet).
    lines: Vec<usize>,
}

enum RawTargets {
    Values(Vec<f64>),
    Classes(Vec<String>),
    Labels(Vec<i64>),
}

/// Table rows in memory, standardised, ready to batch.
pub struct TableRows {
    numeric: Vec<f32>,
    numeric_width: usize,
    categorical: Vec<i64>,
    categorical_width: usize,
    targets: RowTargets,
    lines: Vec<usize>,
    file: std::path::PathBuf,
}

impl Samples for TableRows {
    fn len(&self) -> usize {
        self.lines.len()
    }

    fn batch(&self, indices: &[u32]) -> HostBatch {
        HostBatch::Rows {
            numeric: rows_of(&self.numeric, self.numeric_width, indices),
            numeric_width: self.numeric_width,
            categorical: rows_of(&self.categorical, self.categorical_width, indices),
            categorical_width: self.categorical_width,
            targets: self.targets.select(indices),
        }
    }

    fn resident_bytes(&self) -> usize {
        self.numeric.len() * 4 + self.categorical.len() * 8 + self.lines.len() * 16
    }

    fn sample_bytes(&self) -> usize {
        self.numeric_width * 4 + self.categorical_width * 8 + 16
    }

    fn example(&self, index: u32) -> Option<super::Example> {
        Some(super::Example {
            file: Some(self.file.clone()),
            line: Some(self.lines[index as usize]),
            image: None,
        })
    }
}

/// Loads the table `config` names and splits it (seeded), with statistics and vocabularies
/// from the training split.
pub fn load(config: &DataConfig, seed: u64) -> Result<Splits, DataError> {
    let path = config.path.as_path();
    let table = expand(
        config.tabular.clone().unwrap_or_default(),
        &header(path, config)?,
        path,
    )?;
    let mut skipped = Skipped::default();
    let raw = read(path, &table, config.limit, config.on_error, &mut skipped)?;
    if raw.lines.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            what: "rows".into(),
        });
    }
    let (train, valid, test) = match &raw.splits {
        Some(assigned) => {
            let rows = |wanted: RowSplit| -> Vec<u32> {
                (0..assigned.len() as u32)
                    .filter(|&r| assigned[r as usize] == wanted)
                    .collect()
            };
            (
                rows(RowSplit::Train),
                rows(RowSplit::Valid),
                rows(RowSplit::Test),
            )
        }
        None => {
            let all: Vec<u32> = (0..raw.lines.len() as u32).collect();
            let (rest, valid) = split_off(all, config.valid_fraction, seed);
            let (train, test) = split_off(rest, config.test_fraction, seed ^ TEST_SPLIT_SALT);
            (train, valid, test)
        }
    };
    if train.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            what: "training rows".into(),
        });
    }
    let (rows, spec, unseen) = prepare(raw, &table, &train, path)?;
    let data: Arc<dyn Dataset> = Arc::new(rows);
    if unseen.values().any(|&count| count > 0) {
        let counts: Vec<String> = unseen
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(column, count)| format!("{column}: {count}"))
            .collect();
        eprintln!(
            "note: categorical values not seen in training (read as unknown) in the validation and test rows: {}",
            counts.join(", ")
        );
    }
    Ok(Splits {
        train: Split::new(data.clone(), train),
        valid: Split::new(data.clone(), valid),
        test: Split::new(data, test),
        spec,
        tokenizer: None,
        skipped,
        unseen_categories: unseen,
    })
}

/// Reads every row's named columns: numbers parsed, categories as written, targets as the
/// task reads them.
fn read(
    path: &Path,
    table: &TabularDataConfig,
    limit: Option<usize>,
    on_error: OnError,
    skipped: &mut Skipped,
) -> Result<RawRows, DataError> {
    let columns: Vec<&str> = table
        .numeric
        .iter()
        .chain(&table.categorical)
        .chain(&table.targets)
        .chain(&table.split_column)
        .map(String::as_str)
        .collect();
    let mut raw = RawRows {
        splits: table.split_column.as_ref().map(|_| Vec::new()),
        numeric: Vec::new(),
        categorical: Vec::new(),
        targets: match table.task {
            TabularTask::Regression => RawTargets::Values(Vec::new()),
            TabularTask::Classification => RawTargets::Classes(Vec::new()),
            TabularTask::MultiLabel => RawTargets::Labels(Vec::new()),
        },
        lines: Vec::new(),
    };
    let mut add = |line: usize, cells: Result<Vec<Option<String>>, String>| match cells
        .and_then(|cells| parse_row(&cells, table))
    {
        Ok(row) => {
            raw.push(row, line);
            Ok(())
        }
        Err(detail) => skipped.bad_record(on_error, path, line, detail),
    };
    match format_of(path, table.format) {
        TableFormat::Parquet => {
            let rows = super::parquet::read_columns(path, &columns, limit)?;
            for (index, cells) in rows.into_iter().enumerate() {
                add(index + 1, Ok(cells))?;
            }
        }
        _ => read_csv(path, &columns, limit, &mut add)?,
    }
    Ok(raw)
}

/// The names of the table's columns, in the file's order: the CSV header row or the Parquet
/// schema.
fn header(path: &Path, config: &DataConfig) -> Result<Vec<String>, DataError> {
    let format = config
        .tabular
        .as_ref()
        .map_or(TableFormat::Auto, |t| t.format);
    let corrupt = |detail: String| DataError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    if !path.is_file() {
        return Err(DataError::Missing {
            dataset: "tabular".into(),
            path: path.to_path_buf(),
            detail: "no such file".into(),
            fetch: None,
        });
    }
    match format_of(path, format) {
        TableFormat::Parquet => super::parquet::column_names(path),
        _ => {
            let file = std::fs::File::open(path).map_err(|source| DataError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let input: Box<dyn std::io::Read> =
                match path.extension().is_some_and(|ext| ext == "gz") {
                    true => Box::new(flate2::read::GzDecoder::new(file)),
                    false => Box::new(file),
                };
            let mut reader = csv::ReaderBuilder::new().from_reader(input);
            let headers = reader
                .headers()
                .map_err(|err| corrupt(format!("cannot read the header row: {err}")))?;
            Ok(headers.iter().map(|h| h.trim().to_string()).collect())
        }
    }
}

/// `table` with every column pattern (`*`, `?`) replaced by the columns of `header` it
/// matches, in the file's order; a name or pattern that matches none is refused, naming the
/// columns there are.
fn expand(
    mut table: TabularDataConfig,
    header: &[String],
    path: &Path,
) -> Result<TabularDataConfig, DataError> {
    let corrupt = |detail: String| DataError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let expand_list = |list: &[String], key: &str| -> Result<Vec<String>, DataError> {
        let mut columns = Vec::new();
        for name in list {
            let matched: Vec<String> = if name.contains(['*', '?']) {
                let pattern = glob::Pattern::new(name)
                    .map_err(|err| corrupt(format!("data.tabular.{key}: \"{name}\": {err}")))?;
                header
                    .iter()
                    .filter(|h| pattern.matches(h))
                    .cloned()
                    .collect()
            } else {
                header.iter().filter(|h| *h == name).cloned().collect()
            };
            if matched.is_empty() {
                return Err(corrupt(format!(
                    "data.tabular.{key}: no column \"{name}\" in the header row (columns: {})",
                    header.join(", ")
                )));
            }
            columns.extend(matched);
        }
        Ok(columns)
    };
    table.numeric = expand_list(&table.numeric, "numeric")?;
    table.categorical = expand_list(&table.categorical, "categorical")?;
    table.targets = expand_list(&table.targets, "targets")?;
    if let Some(split) = &table.split_column {
        expand_list(std::slice::from_ref(split), "split_column")?;
    }
    let mut seen = std::collections::BTreeSet::new();
    for column in table
        .numeric
        .iter()
        .chain(&table.categorical)
        .chain(&table.targets)
    {
        if !seen.insert(column) {
            return Err(corrupt(format!(
                "column \"{column}\" is named more than once in [data.tabular]"
            )));
        }
    }
    if table.task == TabularTask::Classification && table.targets.len() != 1 {
        return Err(corrupt(format!(
            "a classification has one target column (its class); [data.tabular] targets name {}",
            table.targets.len()
        )));
    }
    Ok(table)
}

fn format_of(path: &Path, format: TableFormat) -> TableFormat {
    match format {
        TableFormat::Auto
            if path
                .extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("parquet")) =>
        {
            TableFormat::Parquet
        }
        TableFormat::Auto => TableFormat::Csv,
        chosen => chosen,
    }
}

/// Reads `columns` of a CSV file (gzipped when it ends in `.gz`) with a header row, handing
/// each record's cells with its line to `add`.
fn read_csv(
    path: &Path,
    columns: &[&str],
    limit: Option<usize>,
    add: &mut impl FnMut(usize, Result<Vec<Option<String>>, String>) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let input: Box<dyn std::io::Read> = match path.extension().is_some_and(|ext| ext == "gz") {
        true => Box::new(flate2::read::GzDecoder::new(file)),
        false => Box::new(file),
    };
    let corrupt = |detail: String| DataError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
    let headers = reader
        .headers()
        .map_err(|err| corrupt(format!("cannot read the header row: {err}")))?
        .clone();
    let positions = columns
        .iter()
        .map(|name| {
            headers
                .iter()
                .position(|h| h.trim() == *name)
                .ok_or_else(|| {
                    corrupt(format!(
                        "no column \"{name}\" in the header row (columns: {})",
                        headers.iter().collect::<Vec<_>>().join(", ")
                    ))
                })
        })
        .collect::<Result<Vec<usize>, DataError>>()?;
    let limit = limit.unwrap_or(usize::MAX);
    let mut kept = 0;
    for result in reader.records() {
        if kept >= limit {
            break;
        }
        let line = match &result {
            Ok(record) => record.position().map_or(0, |p| p.line() as usize),
            Err(err) => err.position().map_or(0, |p| p.line() as usize),
        };
        // A record the CSV reader cannot take (a wrong field count, bad UTF-8) is a bad
        // record like any other.
        let cells = result
            .map(|record| {
                positions
                    .iter()
                    .map(|&p| record.get(p).map(|cell| cell.trim().to_string()))
                    .collect()
            })
            .map_err(|err| format!("invalid CSV: {err}"));
        let good = cells.is_ok();
        add(line, cells)?;
        kept += usize::from(good);
    }
    Ok(())
}

/// One row's values, parsed.
struct ParsedRow {
    numeric: Vec<f64>,
    categorical: Vec<String>,
    target: ParsedTarget,
    split: Option<RowSplit>,
}

enum ParsedTarget {
    Values(Vec<f64>),
    Class(String),
    Labels(Vec<i64>),
}

impl RawRows {
    fn push(&mut self, row: ParsedRow, line: usize) {
        if let (Some(splits), Some(split)) = (&mut self.splits, row.split) {
            splits.push(split);
        }
        self.numeric.extend(row.numeric);
        self.categorical.extend(row.categorical);
        match (&mut self.targets, row.target) {
            (RawTargets::Values(all), ParsedTarget::Values(values)) => all.extend(values),
            (RawTargets::Classes(all), ParsedTarget::Class(class)) => all.push(class),
            (RawTargets::Labels(all), ParsedTarget::Labels(labels)) => all.extend(labels),
            _ => unreachable!("targets are parsed for the table's task"),
        }
        self.lines.push(line);
    }
}

/// Parses one row's cells (numeric, then categorical, then target columns), or says which
/// column is wrong and why.
fn parse_row(cells: &[Option<String>], table: &TabularDataConfig) -> Result<ParsedRow, String> {
    let (numeric_cells, rest) = cells.split_at(table.numeric.len());
    let (categorical_cells, rest) = rest.split_at(table.categorical.len());
    let (target_cells, split_cell) = rest.split_at(table.targets.len());
    let split = match (&table.split_column, split_cell.first()) {
        (Some(column), Some(cell)) => Some(match cell.as_deref().unwrap_or("") {
            "train" => RowSplit::Train,
            "valid" | "validation" => RowSplit::Valid,
            "test" => RowSplit::Test,
            other => {
                return Err(format!(
                    "split column \"{column}\": \"{other}\" is not train, valid or test"
                ));
            }
        }),
        _ => None,
    };
    let number = |cell: &Option<String>, column: &str| -> Result<f64, String> {
        let text = cell.as_deref().unwrap_or("");
        if text.is_empty() {
            return Err(format!("column \"{column}\" is empty"));
        }
        text.parse::<f64>()
            .ok()
            .filter(|value| value.is_finite())
            .ok_or_else(|| format!("column \"{column}\": \"{text}\" is not a number"))
    };
    let numeric = numeric_cells
        .iter()
        .zip(&table.numeric)
        .map(|(cell, column)| number(cell, column))
        .collect::<Result<Vec<f64>, String>>()?;
    let categorical = categorical_cells
        .iter()
        .map(|cell| cell.clone().unwrap_or_default())
        .collect();
    let target = match table.task {
        TabularTask::Regression => ParsedTarget::Values(
            target_cells
                .iter()
                .zip(&table.targets)
                .map(|(cell, column)| number(cell, column))
                .collect::<Result<_, _>>()?,
        ),
        TabularTask::Classification => {
            let class = target_cells[0].clone().unwrap_or_default();
            if class.is_empty() {
                return Err(format!("target column \"{}\" is empty", table.targets[0]));
            }
            ParsedTarget::Class(class)
        }
        TabularTask::MultiLabel => ParsedTarget::Labels(
            target_cells
                .iter()
                .zip(&table.targets)
                .map(|(cell, column)| match cell.as_deref().unwrap_or("") {
                    "1" | "true" | "True" | "TRUE" | "1.0" => Ok(1),
                    "0" | "false" | "False" | "FALSE" | "0.0" => Ok(0),
                    other => Err(format!(
                        "label column \"{column}\": \"{other}\" is not 0 or 1"
                    )),
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(ParsedRow {
        numeric,
        categorical,
        target,
        split,
    })
}

/// Standardises the rows with the training rows' statistics and numbers the categories seen
/// in training; returns the rows, their spec, and per categorical column how many values of
/// the other rows were not seen in training.
fn prepare(
    raw: RawRows,
    table: &TabularDataConfig,
    train: &[u32],
    path: &Path,
) -> Result<(TableRows, DataSpec, BTreeMap<String, usize>), DataError> {
    let rows = raw.lines.len();
    let numeric_width = table.numeric.len();
    let numeric_columns: Vec<NumericColumn> = table
        .numeric
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let (mean, std) = moments(
                train
                    .iter()
                    .map(|&r| raw.numeric[r as usize * numeric_width + c]),
            );
            NumericColumn {
                name: name.clone(),
                mean,
                std,
            }
        })
        .collect();
    let numeric = standardize(&raw.numeric, &numeric_columns, |c| (c.mean, c.std));

    let categorical_width = table.categorical.len();
    let mut in_train = vec![false; rows];
    for &r in train {
        in_train[r as usize] = true;
    }
    let mut categorical_columns = Vec::with_capacity(categorical_width);
    let mut categorical = vec![0i64; rows * categorical_width];
    let mut unseen = BTreeMap::new();
    for (c, name) in table.categorical.iter().enumerate() {
        let cell = |r: usize| raw.categorical[r * categorical_width + c].as_str();
        let values: Vec<String> = train
            .iter()
            .map(|&r| cell(r as usize).to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let ids: HashMap<&str, i64> = values
            .iter()
            .enumerate()
            .map(|(i, value)| (value.as_str(), i as i64 + 1))
            .collect();
        let mut missing = 0;
        for r in 0..rows {
            let id = ids.get(cell(r)).copied().unwrap_or(0);
            if id == 0 && !in_train[r] {
                missing += 1;
            }
            categorical[r * categorical_width + c] = id;
        }
        unseen.insert(name.clone(), missing);
        categorical_columns.push(CategoricalColumn {
            name: name.clone(),
            values,
        });
    }

    let (targets, target) = match raw.targets {
        RawTargets::Values(values) => {
            let width = table.targets.len();
            let scales: Vec<TargetScale> = (0..width)
                .map(|t| {
                    let (mean, std) = match table.standardize_targets {
                        true => moments(train.iter().map(|&r| values[r as usize * width + t])),
                        false => (0.0, 1.0),
                    };
                    TargetScale { mean, std }
                })
                .collect();
            let standardized = standardize(&values, &scales, |s| (s.mean, s.std));
            (
                RowTargets::Values {
                    values: standardized,
                    width,
                },
                TaskSpec::Regression {
                    targets: table.targets.clone(),
                    scales,
                },
            )
        }
        RawTargets::Classes(classes) => {
            let names = super::classes_of(train.iter().map(|&r| classes[r as usize].as_str()));
            let ids: HashMap<&str, i64> = names
                .iter()
                .enumerate()
                .map(|(i, name)| (name.as_str(), i as i64))
                .collect();
            let mut targets = Vec::with_capacity(rows);
            for (r, class) in classes.iter().enumerate() {
                let id = ids.get(class.as_str()).copied().ok_or_else(|| DataError::Record {
                    path: path.to_path_buf(),
                    line: raw.lines[r],
                    detail: format!(
                        "class \"{class}\" of column \"{}\" is not in the training rows' classes",
                        table.targets[0]
                    ),
                    skippable: false,
                })?;
                targets.push(id);
            }
            (
                RowTargets::Classes(targets),
                TaskSpec::Classification { classes: names },
            )
        }
        RawTargets::Labels(present) => (
            RowTargets::Labels {
                present,
                width: table.targets.len(),
            },
            TaskSpec::MultiLabel {
                labels: table.targets.clone(),
            },
        ),
    };
    let spec = DataSpec::Tabular {
        numeric: numeric_columns,
        categorical: categorical_columns,
        target,
    };
    let rows = TableRows {
        numeric,
        numeric_width,
        categorical,
        categorical_width,
        targets,
        lines: raw.lines,
        file: path.to_path_buf(),
    };
    Ok((rows, spec, unseen))
}

/// Reads another file of the run's table (a followed shard) as the model trained on `spec`
/// reads rows: its statistics and vocabularies, its classes. The file must have every column
/// the spec and the targets name; a malformed value, or a class the run does not know, is an
/// error naming its line.
pub fn read_with_spec(
    path: &Path,
    config: &DataConfig,
    spec: &DataSpec,
) -> Result<TableRows, DataError> {
    let DataSpec::Tabular {
        numeric: numeric_columns,
        categorical: categorical_columns,
        target,
    } = spec
    else {
        unreachable!("a table's rows are read with a table's spec");
    };
    let mut table = expand(
        config.tabular.clone().unwrap_or_default(),
        &header(path, config)?,
        path,
    )?;
    // The run's columns, whatever the patterns match in this file; a split column is not
    // the shard's business.
    table.numeric = numeric_columns.iter().map(|c| c.name.clone()).collect();
    table.categorical = categorical_columns.iter().map(|c| c.name.clone()).collect();
    table.split_column = None;
    let raw = read(path, &table, None, OnError::Fail, &mut Skipped::default())?;
    let numeric = standardize(&raw.numeric, numeric_columns, |c| (c.mean, c.std));
    let categorical_width = categorical_columns.len();
    let categorical = raw
        .categorical
        .iter()
        .enumerate()
        .map(|(cell, value)| categorical_columns[cell % categorical_width].id(value))
        .collect();
    let targets = match (raw.targets, target) {
        (RawTargets::Values(values), TaskSpec::Regression { scales, .. }) => RowTargets::Values {
            values: standardize(&values, scales, |s| (s.mean, s.std)),
            width: scales.len(),
        },
        (RawTargets::Classes(classes), TaskSpec::Classification { classes: names }) => {
            let mut ids = Vec::with_capacity(classes.len());
            for (row, class) in classes.iter().enumerate() {
                let id = names.iter().position(|name| name == class).ok_or_else(|| {
                    DataError::Record {
                        path: path.to_path_buf(),
                        line: raw.lines[row],
                        detail: format!(
                            "class \"{class}\" of column \"{}\" is not one of the run's classes",
                            table.targets[0]
                        ),
                        skippable: false,
                    }
                })?;
                ids.push(id as i64);
            }
            RowTargets::Classes(ids)
        }
        (RawTargets::Labels(present), TaskSpec::MultiLabel { labels }) => RowTargets::Labels {
            present,
            width: labels.len(),
        },
        (_, target) => {
            return Err(DataError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "[data.tabular] reads {:?} targets; the run's model predicts {}",
                    table.task,
                    target.name()
                ),
            });
        }
    };
    Ok(TableRows {
        numeric,
        numeric_width: numeric_columns.len(),
        categorical,
        categorical_width,
        targets,
        lines: raw.lines,
        file: path.to_path_buf(),
    })
}

impl TableRows {
    /// The rows `picks` (`(rows, row)`) of several tables of one spec, in that order.
    pub fn gather(picks: &[(&TableRows, u32)]) -> Option<TableRows> {
        let (first, _) = picks.first()?;
        let (numeric_width, categorical_width) = (first.numeric_width, first.categorical_width);
        let mut gathered = TableRows {
            numeric: Vec::with_capacity(picks.len() * numeric_width),
            numeric_width,
            categorical: Vec::with_capacity(picks.len() * categorical_width),
            categorical_width,
            targets: first.targets.select(&[]),
            lines: Vec::with_capacity(picks.len()),
            file: first.file.clone(),
        };
        for &(rows, row) in picks {
            let r = row as usize;
            gathered
                .numeric
                .extend_from_slice(&rows.numeric[r * numeric_width..(r + 1) * numeric_width]);
            gathered.categorical.extend_from_slice(
                &rows.categorical[r * categorical_width..(r + 1) * categorical_width],
            );
            gathered.targets.append(rows.targets.select(&[row]));
            gathered.lines.push(rows.lines[r]);
        }
        Some(gathered)
    }
}

/// Mean and standard deviation (population; 1 where the column is constant).
fn moments(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let (count, sum) = values
        .clone()
        .fold((0usize, 0.0), |(n, s), v| (n + 1, s + v));
    if count == 0 {
        return (0.0, 1.0);
    }
    let mean = sum / count as f64;
    let variance = values.map(|v| (v - mean).powi(2)).sum::<f64>() / count as f64;
    let std = variance.sqrt();
    (mean, if std > 0.0 { std } else { 1.0 })
}

/// `values` `[rows, columns.len()]` standardised column by column.
fn standardize<C>(values: &[f64], columns: &[C], moments: impl Fn(&C) -> (f64, f64)) -> Vec<f32> {
    let width = columns.len().max(1);
    values
        .iter()
        .enumerate()
        .map(|(i, &value)| {
            let (mean, std) = moments(&columns[i % width]);
            ((value - mean) / std) as f32
        })
        .collect()
}

/// One row given for prediction (`stoke predict --row`, `stoke serve`), read as training
/// read its table: the spec's numeric columns standardised, its categories numbered (0 for
/// a value it has not seen). `row` maps column names to values as text.
pub fn encode_row(
    spec: &DataSpec,
    row: &HashMap<String, String>,
) -> Result<(Vec<f32>, Vec<i64>), String> {
    let DataSpec::Tabular {
        numeric,
        categorical,
        ..
    } = spec
    else {
        return Err(format!(
            "the model reads {}, not table rows",
            spec.describe()
        ));
    };
    let values = numeric
        .iter()
        .map(|column| {
            let text = row
                .get(&column.name)
                .ok_or_else(|| format!("no value for column \"{}\"", column.name))?;
            let value: f64 = text
                .trim()
                .parse()
                .map_err(|_| format!("column \"{}\": \"{text}\" is not a number", column.name))?;
            Ok(((value - column.mean) / column.std) as f32)
        })
        .collect::<Result<Vec<f32>, String>>()?;
    let ids = categorical
        .iter()
        .map(|column| {
            let text = row
                .get(&column.name)
                .ok_or_else(|| format!("no value for column \"{}\"", column.name))?;
            Ok(column.id(text.trim()))
        })
        .collect::<Result<Vec<i64>, String>>()?;
    Ok((values, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_of_a_column_and_of_a_constant_one() {
        let (mean, std) = moments([1.0, 2.0, 3.0, 4.0].into_iter());
        assert_eq!(mean, 2.5);
        assert!((std - 1.25f64.sqrt()).abs() < 1e-12);
        assert_eq!(moments([5.0, 5.0].into_iter()), (5.0, 1.0));
    }
}
