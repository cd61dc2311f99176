//! TensorBoard event files of a run's metrics (`[log] tensorboard = true`): every record of
//! `metrics.jsonl` as scalars `<split>/<metric>` at its step, in TensorBoard's format
//! (TFRecord framing of `Event` protocol buffers, declared here with prost's derive).

use std::path::Path;

use prost::Message;

use super::metrics::MetricRecord;
use crate::Error;

pub const DIR: &str = "tensorboard";
/// TensorBoard finds event files by this infix.
const FILE: &str = "events.out.tfevents.0.stoke";

#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, tag = "2")]
    pub simple_value: f32,
}

/// Rewrites `<run_dir>/tensorboard/` from `records`; `started` is the run's start as Unix
/// seconds (record times are offsets from it).
pub fn write(run_dir: &Path, records: &[MetricRecord], started: f64) -> Result<(), Error> {
    let dir = run_dir.join(DIR);
    std::fs::create_dir_all(&dir).map_err(|source| Error::io(&dir, source))?;
    let mut bytes = Vec::new();
    frame(
        &mut bytes,
        &Event {
            wall_time: started,
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        },
    );
    for record in records {
        let split = record.split.to_string();
        let metrics = [
            ("loss", Some(record.loss)),
            ("lr", Some(record.lr).filter(|_| split == "train")),
            ("samples_per_s", Some(record.samples_per_s)),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .chain(
            record
                .metrics
                .iter()
                .map(|(name, value)| (name.clone(), Some(*value))),
        );
        let value = metrics
            .filter_map(|(name, value)| {
                Some(Value {
                    tag: format!("{split}/{name}"),
                    simple_value: value? as f32,
                })
            })
            .collect();
        frame(
            &mut bytes,
            &Event {
                wall_time: started + record.time_s,
                step: record.step as i64,
                what: Some(What::Summary(Summary { value })),
            },
        );
    }
    crate::files::write_atomic(&dir.join(FILE), &bytes)
}

/// Appends `event` as one TFRecord: length, its masked CRC-32C, the data, the data's.
fn frame(out: &mut Vec<u8>, event: &Event) {
    let data = event.encode_to_vec();
    let length = (data.len() as u64).to_le_bytes();
    out.extend(length);
    out.extend(masked_crc(&length).to_le_bytes());
    out.extend(&data);
    out.extend(masked_crc(&data).to_le_bytes());
}

fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The events of an event file, for tests and tools; `None` if the framing is damaged.
pub fn read(bytes: &[u8]) -> Option<Vec<Event>> {
    let mut events = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let length = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
        let length_crc = u32::from_le_bytes(rest.get(8..12)?.try_into().ok()?);
        let data = rest.get(12..12 + length)?;
        let data_crc = u32::from_le_bytes(rest.get(12 + length..16 + length)?.try_into().ok()?);
        if length_crc != masked_crc(&rest[..8]) || data_crc != masked_crc(data) {
            return None;
        }
        events.push(Event::decode(data).ok()?);
        rest = &rest[16 + length..];
    }
    Some(events)
}
