//! `[data] dataset = "engine-windows"`: windows of consecutive cycles of one engine's sensor
//! readings, each labelled with the engine's remaining useful life (RUL) at its last cycle.
//!
//! Engines, not windows, are split: engine ids ending in 0 are the test split, ending in 5
//! the validation split, so no engine is in two splits. Sensors are standardised with the
//! training engines' statistics, and the RUL is divided by its cap so the model sees values
//! in [0, 1]; metrics come back in cycles.

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};
use stoke::data::{Batch, BatchContext, Data, DataContext, DataError, Parts, Skipped, Spec};
use stoke::task::{TargetScale, TaskSpec};

/// The kind's own keys in `[data]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineWindowsConfig {
    /// Sensor columns, read as the model's inputs.
    pub sensors: Vec<String>,
    /// Cycles in a window.
    pub window: usize,
    /// The column of remaining useful life.
    pub target: String,
    /// The column that names the engine of each row.
    pub unit_column: String,
    /// The RUL the targets are divided by (its usual cap).
    pub target_scale: f64,
}

impl Default for EngineWindowsConfig {
    fn default() -> Self {
        Self {
            sensors: ["s1", "s2", "s3", "s4"].map(String::from).to_vec(),
            window: 30,
            target: "rul".into(),
            unit_column: "unit".into(),
            target_scale: 125.0,
        }
    }
}

/// What a forecaster is built from, saved with every checkpoint and artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineSpec {
    pub sensors: Vec<String>,
    pub window: usize,
    pub target: String,
    pub target_scale: f64,
    /// The training engines' mean and standard deviation of each sensor.
    pub means: Vec<f32>,
    pub stds: Vec<f32>,
}

impl Spec for EngineSpec {
    fn task(&self) -> TaskSpec {
        TaskSpec::Regression {
            targets: vec![self.target.clone()],
            scales: vec![TargetScale {
                mean: 0.0,
                std: self.target_scale,
            }],
        }
    }

    fn describe(&self) -> String {
        format!(
            "windows of {} cycles of {} sensors, predicting {}",
            self.window,
            self.sensors.len(),
            self.target
        )
    }
}

/// A batch: windows `[batch, window, sensors]` and their scaled RUL `[batch, 1]`.
pub struct EngineBatch {
    pub windows: Tensor<3>,
    pub targets: Tensor<2>,
}

impl Batch for EngineBatch {
    fn samples(&self) -> usize {
        self.windows.dims()[0]
    }

    fn autocast(self, dtype: FloatDType) -> Self {
        Self {
            windows: self.windows.cast(dtype),
            ..self
        }
    }
}

/// The windows of some engines.
pub struct EngineWindows {
    /// Standardised readings, `[rows, sensors]`, of this split's engines.
    readings: Vec<f32>,
    sensors: usize,
    window: usize,
    /// The first row of each window.
    starts: Vec<usize>,
    /// Each window's scaled RUL.
    targets: Vec<f32>,
}

impl Data for EngineWindows {
    const KIND: &'static str = "engine-windows";
    type Config = EngineWindowsConfig;
    type Spec = EngineSpec;
    type Batch = EngineBatch;

    fn load(config: &EngineWindowsConfig, context: &DataContext) -> Result<Parts<Self>, DataError> {
        let mut skipped = Skipped::default();
        let engines = read(config, context, &mut skipped)?;
        let split = |last_digit: u64| -> Vec<&Engine> {
            engines
                .values()
                .filter(|engine| match last_digit {
                    0 | 5 => engine.id % 10 == last_digit,
                    _ => engine.id % 10 != 0 && engine.id % 10 != 5,
                })
                .collect()
        };
        let (train, valid, test) = (split(1), split(5), split(0));
        let (means, stds) = moments(&train, config.sensors.len());
        let windows = |engines: &[&Engine]| EngineWindows::new(engines, config, &means, &stds);
        let spec = EngineSpec {
            sensors: config.sensors.clone(),
            window: config.window,
            target: config.target.clone(),
            target_scale: config.target_scale,
            means: means.clone(),
            stds: stds.clone(),
        };
        Ok(Parts {
            train: windows(&train),
            valid: Some(windows(&valid)),
            test: Some(windows(&test)),
            spec,
            skipped,
        })
    }

    fn len(&self) -> usize {
        self.starts.len()
    }

    fn batch(&self, indices: &[u32], context: &BatchContext) -> EngineBatch {
        let size = self.window * self.sensors;
        let mut windows = Vec::with_capacity(indices.len() * size);
        for &index in indices {
            let start = self.starts[index as usize] * self.sensors;
            windows.extend_from_slice(&self.readings[start..start + size]);
        }
        let targets: Vec<f32> = indices.iter().map(|&i| self.targets[i as usize]).collect();
        let shape = [indices.len(), self.window, self.sensors];
        EngineBatch {
            windows: Tensor::from_data(TensorData::new(windows, shape), &context.device),
            targets: Tensor::from_data(
                TensorData::new(targets, [indices.len(), 1]),
                &context.device,
            ),
        }
    }
}

/// One engine's rows, in cycle order.
struct Engine {
    id: u64,
    readings: Vec<Vec<f64>>,
    rul: Vec<f64>,
}

/// Every engine of the CSV file, by id.
fn read(
    config: &EngineWindowsConfig,
    context: &DataContext,
    skipped: &mut Skipped,
) -> Result<BTreeMap<u64, Engine>, DataError> {
    let path = context.path.as_path();
    let corrupt = |detail: String| DataError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|err| DataError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(err.to_string()),
    })?;
    let headers = reader
        .headers()
        .map_err(|err| corrupt(format!("cannot read the header row: {err}")))?
        .clone();
    let column = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            corrupt(format!(
                "no column \"{name}\" (columns: {})",
                headers.iter().collect::<Vec<_>>().join(", ")
            ))
        })
    };
    let unit = column(&config.unit_column)?;
    let target = column(&config.target)?;
    let sensors = config
        .sensors
        .iter()
        .map(|name| column(name))
        .collect::<Result<Vec<usize>, _>>()?;
    let mut engines = BTreeMap::new();
    for (index, record) in reader.records().enumerate() {
        if context.limit.is_some_and(|limit| index >= limit) {
            break;
        }
        let line = index + 2; // after the header row
        let parsed = record.map_err(|err| err.to_string()).and_then(|record| {
            let number = |column: usize, name: &str| -> Result<f64, String> {
                let text = record.get(column).unwrap_or_default();
                text.parse::<f64>()
                    .map_err(|_| format!("column \"{name}\": \"{text}\" is not a number"))
            };
            let id = number(unit, &config.unit_column)? as u64;
            let readings = sensors
                .iter()
                .zip(&config.sensors)
                .map(|(&column, name)| number(column, name))
                .collect::<Result<Vec<f64>, String>>()?;
            Ok((id, readings, number(target, &config.target)?))
        });
        match parsed {
            Ok((id, readings, rul)) => {
                let engine = engines.entry(id).or_insert_with(|| Engine {
                    id,
                    readings: Vec::new(),
                    rul: Vec::new(),
                });
                engine.readings.push(readings);
                engine.rul.push(rul);
            }
            Err(detail) => skipped.bad_record(context.on_error, path, line, detail)?,
        }
    }
    if engines.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            what: "engines".into(),
        });
    }
    Ok(engines)
}

/// Each sensor's mean and standard deviation over `engines`.
fn moments(engines: &[&Engine], sensors: usize) -> (Vec<f32>, Vec<f32>) {
    let rows: Vec<&Vec<f64>> = engines.iter().flat_map(|e| &e.readings).collect();
    let n = rows.len().max(1) as f64;
    (0..sensors)
        .map(|s| {
            let mean = rows.iter().map(|r| r[s]).sum::<f64>() / n;
            let variance = rows.iter().map(|r| (r[s] - mean).powi(2)).sum::<f64>() / n;
            (mean as f32, variance.sqrt().max(1e-6) as f32)
        })
        .unzip()
}

impl EngineWindows {
    fn new(engines: &[&Engine], config: &EngineWindowsConfig, means: &[f32], stds: &[f32]) -> Self {
        let mut windows = EngineWindows {
            readings: Vec::new(),
            sensors: config.sensors.len(),
            window: config.window,
            starts: Vec::new(),
            targets: Vec::new(),
        };
        for engine in engines {
            let first = windows.readings.len() / windows.sensors;
            for row in &engine.readings {
                windows.readings.extend(
                    row.iter()
                        .zip(means.iter().zip(stds))
                        .map(|(&value, (&mean, &std))| (value as f32 - mean) / std),
                );
            }
            // A window ending at each cycle that has `window` cycles up to it.
            for end in config.window.saturating_sub(1)..engine.readings.len() {
                windows.starts.push(first + end + 1 - config.window);
                windows
                    .targets
                    .push((engine.rul[end] / config.target_scale) as f32);
            }
        }
        windows
    }
}

/// Where the engines' file is when `data.path` is not given.
#[allow(dead_code)]
pub fn default_path() -> &'static Path {
    Path::new("examples/forecaster/data/engines.csv")
}
