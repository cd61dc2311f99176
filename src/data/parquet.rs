//! Parquet files, as Spark, Delta Lake and Hugging Face datasets write them: a payload column
//! (text, or encoded image bytes, bare or in Hugging Face's `{bytes, path}` struct) and a
//! label column (integer or string), read through arrow.
//!
//! The parquet crate panics on some damaged files (a division by zero in its byte-array
//! reader, found by fuzzing: `tests/regressions/text-parquet/`). Every read here runs behind
//! `crate::panics::contained`, so such a file is refused as corrupt, naming it, like any other.

use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::DataError;

/// One row's payload and label, or why it has none.
pub struct Row<T> {
    /// 1-based row number in the file, for messages.
    pub row: usize,
    pub value: Result<(T, String), String>,
}

/// What a payload column holds.
pub trait Payload: Sized {
    const WHAT: &'static str;
    fn column(array: &dyn Array) -> Option<Vec<Option<Self>>>;
}

impl Payload for String {
    const WHAT: &'static str = "a string column";

    fn column(array: &dyn Array) -> Option<Vec<Option<Self>>> {
        strings(array)
    }
}

impl Payload for Vec<u8> {
    const WHAT: &'static str = "a binary column or a struct with a binary \"bytes\" field";

    fn column(array: &dyn Array) -> Option<Vec<Option<Self>>> {
        bytes(array)
    }
}

/// Reads up to `limit` rows of the first of `payload_columns` the file has and of
/// `label_column`.
pub fn read<T: Payload>(
    path: &Path,
    payload_columns: &[&str],
    label_column: &str,
    limit: Option<usize>,
) -> Result<Vec<Row<T>>, DataError> {
    guarded(path, || {
        read_rows(path, payload_columns, label_column, limit)
    })
}

fn read_rows<T: Payload>(
    path: &Path,
    payload_columns: &[&str],
    label_column: &str,
    limit: Option<usize>,
) -> Result<Vec<Row<T>>, DataError> {
    let corrupt = |detail: String| DataError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let builder = open(path)?;
    let schema = builder.schema().clone();
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let payload = payload_columns
        .iter()
        .find(|name| columns.contains(name))
        .ok_or_else(|| {
            corrupt(format!(
                "no column {} (columns: {})",
                payload_columns
                    .iter()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(" or "),
                columns.join(", ")
            ))
        })?
        .to_string();
    if !columns.contains(&label_column) {
        return Err(corrupt(format!(
            "no column \"{label_column}\" (columns: {})",
            columns.join(", ")
        )));
    }
    let reader = builder
        .with_batch_size(4096)
        .build()
        .map_err(|err| corrupt(err.to_string()))?;
    let limit = limit.unwrap_or(usize::MAX);
    let mut rows = Vec::new();
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|err| corrupt(err.to_string()))?;
        let column = |name: &str| batch.column_by_name(name).expect("checked above").clone();
        let (values, labels) = (column(&payload), column(label_column));
        let values = T::column(values.as_ref()).ok_or_else(|| {
            corrupt(format!(
                "column \"{payload}\" is {}; expected {}",
                values.data_type(),
                T::WHAT
            ))
        })?;
        let labels = strings(labels.as_ref()).ok_or_else(|| {
            corrupt(format!(
                "column \"{label_column}\" is {}; expected integers or strings",
                labels.data_type()
            ))
        })?;
        for (value, label) in values.into_iter().zip(labels) {
            if rows.len() >= limit {
                return Ok(rows);
            }
            let row = rows.len() + 1;
            let value = match (value, label) {
                (Some(value), Some(label)) => Ok((value, label)),
                (None, _) => Err(format!("\"{payload}\" is null")),
                (_, None) => Err(format!("\"{label_column}\" is null")),
            };
            rows.push(Row { row, value });
        }
    }
    Ok(rows)
}

/// The names of a Parquet file's columns, in its schema's order.
pub fn column_names(path: &Path) -> Result<Vec<String>, DataError> {
    guarded(path, || {
        Ok(open(path)?
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect())
    })
}

/// Runs `read` on the file at `path`, a panic of the parquet crate's becoming the file's
/// refusal (see the module's doc).
fn guarded<R>(path: &Path, read: impl FnOnce() -> Result<R, DataError>) -> Result<R, DataError> {
    crate::panics::contained(read).unwrap_or_else(|message| {
        Err(DataError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("not a readable Parquet file: the reader failed ({message})"),
        })
    })
}

/// A reader of the Parquet file at `path`, or why it cannot be read.
fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, DataError> {
    let file = File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|err| DataError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("not a readable Parquet file: {err}"),
    })
}

/// Reads up to `limit` rows of the columns `names`, every value as text (numbers as Rust
/// writes them, booleans as `true`/`false`, null as `None`): the table as CSV would give it.
pub fn read_columns(
    path: &Path,
    names: &[&str],
    limit: Option<usize>,
) -> Result<Vec<Vec<Option<String>>>, DataError> {
    guarded(path, || read_column_rows(path, names, limit))
}

fn read_column_rows(
    path: &Path,
    names: &[&str],
    limit: Option<usize>,
) -> Result<Vec<Vec<Option<String>>>, DataError> {
    let corrupt = |detail: String| DataError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let builder = open(path)?;
    let schema = builder.schema().clone();
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if let Some(missing) = names.iter().find(|name| !columns.contains(name)) {
        return Err(corrupt(format!(
            "no column \"{missing}\" (columns: {})",
            columns.join(", ")
        )));
    }
    let reader = builder
        .with_batch_size(4096)
        .build()
        .map_err(|err| corrupt(err.to_string()))?;
    let limit = limit.unwrap_or(usize::MAX);
    let mut rows: Vec<Vec<Option<String>>> = Vec::new();
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|err| corrupt(err.to_string()))?;
        let mut columns = Vec::with_capacity(names.len());
        for name in names {
            let array = batch.column_by_name(name).expect("checked above");
            let values = strings(array.as_ref()).ok_or_else(|| {
                corrupt(format!(
                    "column \"{name}\" is {}; expected numbers, booleans or strings",
                    array.data_type()
                ))
            })?;
            columns.push(values);
        }
        for row in 0..batch.num_rows() {
            if rows.len() >= limit {
                return Ok(rows);
            }
            rows.push(columns.iter().map(|column| column[row].clone()).collect());
        }
    }
    Ok(rows)
}

fn strings(array: &dyn Array) -> Option<Vec<Option<String>>> {
    fn collect<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Vec<Option<String>> {
        values.map(|v| v.map(str::to_string)).collect()
    }
    fn numbers<T: ToString>(values: impl Iterator<Item = Option<T>>) -> Vec<Option<String>> {
        values.map(|v| v.map(|v| v.to_string())).collect()
    }
    Some(match array.data_type() {
        DataType::Utf8 => collect(array.as_string::<i32>().iter()),
        DataType::LargeUtf8 => collect(array.as_string::<i64>().iter()),
        DataType::Utf8View => collect(array.as_string_view().iter()),
        DataType::Int8 => numbers(array.as_primitive::<Int8Type>().iter()),
        DataType::Int16 => numbers(array.as_primitive::<Int16Type>().iter()),
        DataType::Int32 => numbers(array.as_primitive::<Int32Type>().iter()),
        DataType::Int64 => numbers(array.as_primitive::<Int64Type>().iter()),
        DataType::UInt8 => numbers(array.as_primitive::<UInt8Type>().iter()),
        DataType::UInt16 => numbers(array.as_primitive::<UInt16Type>().iter()),
        DataType::UInt32 => numbers(array.as_primitive::<UInt32Type>().iter()),
        DataType::UInt64 => numbers(array.as_primitive::<UInt64Type>().iter()),
        DataType::Float32 => numbers(array.as_primitive::<Float32Type>().iter()),
        DataType::Float64 => numbers(array.as_primitive::<Float64Type>().iter()),
        DataType::Boolean => numbers(array.as_boolean().iter()),
        _ => return None,
    })
}

fn bytes(array: &dyn Array) -> Option<Vec<Option<Vec<u8>>>> {
    fn collect<'a>(values: impl Iterator<Item = Option<&'a [u8]>>) -> Vec<Option<Vec<u8>>> {
        values.map(|v| v.map(<[u8]>::to_vec)).collect()
    }
    Some(match array.data_type() {
        DataType::Binary => collect(array.as_binary::<i32>().iter()),
        DataType::LargeBinary => collect(array.as_binary::<i64>().iter()),
        DataType::BinaryView => collect(array.as_binary_view().iter()),
        DataType::Struct(_) => {
            let structs = array.as_struct();
            let mut inner = bytes(structs.column_by_name("bytes")?.as_ref())?;
            // A null struct has no image even if its field's slot holds bytes.
            for (row, value) in inner.iter_mut().enumerate() {
                if structs.is_null(row) {
                    *value = None;
                }
            }
            inner
        }
        _ => return None,
    })
}
