//! Labelled texts from CSV (with a header row), JSONL or Parquet files. A bad record (invalid UTF-8,
//! invalid JSON, a missing or mistyped field) stops the load with its file and line, or is
//! skipped and counted with `data.on_error = "skip"`.

use std::collections::HashMap;
use std::path::Path;

use crate::config::{OnError, TextDataConfig, TextFormat};
use crate::data::{DataError, Skipped};

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub text: String,
    pub label: String,
    /// 1-based line of the record in its file.
    pub line: usize,
}

/// Reads up to `limit` records of `path`.
pub fn read(
    path: &Path,
    config: &TextDataConfig,
    limit: Option<usize>,
    on_error: OnError,
    skipped: &mut Skipped,
) -> Result<Vec<Record>, DataError> {
    let format = format_of(path, config)?;
    let mut records = Vec::new();
    let mut bad = |line: usize, detail: String| skipped.bad_record(on_error, path, line, detail);
    let limit = limit.unwrap_or(usize::MAX);
    match format {
        TextFormat::Jsonl => {
            let bytes = std::fs::read(path).map_err(|source| DataError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
                if records.len() >= limit {
                    break;
                }
                let line = index + 1;
                if raw.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match parse_json_record(raw, config) {
                    Ok((text, label)) => records.push(Record { text, label, line }),
                    Err(detail) => bad(line, detail)?,
                }
            }
        }
        TextFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(false)
                .from_path(path)
                .map_err(|err| DataError::Corrupt {
                    path: path.to_path_buf(),
                    detail: err.to_string(),
                })?;
            let headers = reader.byte_headers().map_err(|err| DataError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("cannot read the header row: {err}"),
            })?;
            let (text_column, label_column) = (
                csv_column(headers, &config.text_field, path)?,
                csv_column(headers, &config.label_field, path)?,
            );
            for result in reader.byte_records() {
                if records.len() >= limit {
                    break;
                }
                let record = match result {
                    Ok(record) => record,
                    Err(err) => {
                        let line = err.position().map_or(0, |p| p.line() as usize);
                        bad(line, format!("invalid CSV: {err}"))?;
                        continue;
                    }
                };
                let line = record.position().map_or(0, |p| p.line() as usize);
                let field = |column: usize, name: &str| {
                    let bytes = record.get(column).unwrap_or_default();
                    std::str::from_utf8(bytes)
                        .map(str::to_string)
                        .map_err(|err| {
                            format!(
                                "field \"{name}\" is not valid UTF-8 (at byte {})",
                                err.valid_up_to()
                            )
                        })
                };
                match (
                    field(text_column, &config.text_field),
                    field(label_column, &config.label_field),
                ) {
                    (Ok(text), Ok(label)) => records.push(Record {
                        text,
                        label: label.trim().to_string(),
                        line,
                    }),
                    (Err(detail), _) | (_, Err(detail)) => bad(line, detail)?,
                }
            }
        }
        TextFormat::Parquet => {
            let rows = crate::data::parquet::read::<String>(
                path,
                &[config.text_field.as_str()],
                &config.label_field,
                Some(limit),
            )?;
            for row in rows {
                match row.value {
                    Ok((text, label)) => records.push(Record {
                        text,
                        label: label.trim().to_string(),
                        line: row.row,
                    }),
                    Err(detail) => bad(row.row, detail)?,
                }
            }
        }
        TextFormat::Auto => unreachable!("resolved above"),
    }
    Ok(records)
}

/// The position of the column `field` in the CSV header row of `path`.
fn csv_column(headers: &csv::ByteRecord, field: &str, path: &Path) -> Result<usize, DataError> {
    headers
        .iter()
        .position(|h| h == field.as_bytes())
        .ok_or_else(|| DataError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "no column \"{field}\" in the header row (columns: {})",
                String::from_utf8_lossy(headers.as_slice())
            ),
        })
}

/// The format of `path`: `data.text.format`, or told by the extension.
fn format_of(path: &Path, config: &TextDataConfig) -> Result<TextFormat, DataError> {
    Ok(match config.format {
        TextFormat::Auto => match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => TextFormat::Csv,
            Some("jsonl" | "ndjson" | "json") => TextFormat::Jsonl,
            Some("parquet") => TextFormat::Parquet,
            _ => {
                return Err(DataError::Corrupt {
                    path: path.to_path_buf(),
                    detail:
                        "cannot tell CSV, JSONL or Parquet by the extension; set data.text.format"
                            .into(),
                });
            }
        },
        format => format,
    })
}

/// The value of `field` in the records of `path`, by line (row for Parquet) as [`read`]
/// numbers them: strings as they are, numbers and booleans as written. A record without
/// the field (or whose record is unreadable) is absent from the map; a CSV or Parquet file
/// without the column is an error that lists the columns it has.
pub fn read_column(
    path: &Path,
    config: &TextDataConfig,
    field: &str,
) -> Result<HashMap<usize, String>, DataError> {
    let corrupt = |detail: String| DataError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let mut values = HashMap::new();
    match format_of(path, config)? {
        TextFormat::Jsonl => {
            let bytes = std::fs::read(path).map_err(|source| DataError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let mut seen = false;
            for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
                let Ok(serde_json::Value::Object(record)) = serde_json::from_slice(raw) else {
                    continue;
                };
                let value = match record.get(field) {
                    Some(serde_json::Value::String(text)) => text.clone(),
                    Some(serde_json::Value::Null) | None => continue,
                    Some(other) => other.to_string(),
                };
                seen = true;
                values.insert(index + 1, value);
            }
            if !seen && !bytes.is_empty() {
                return Err(corrupt(format!("no record has a field \"{field}\"")));
            }
        }
        TextFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(false)
                .from_path(path)
                .map_err(|err| corrupt(err.to_string()))?;
            let headers = reader
                .byte_headers()
                .map_err(|err| corrupt(format!("cannot read the header row: {err}")))?;
            let column = csv_column(headers, field, path)?;
            for record in reader.byte_records().flatten() {
                let line = record.position().map_or(0, |p| p.line() as usize);
                if let Some(Ok(value)) = record.get(column).map(std::str::from_utf8) {
                    values.insert(line, value.to_string());
                }
            }
        }
        TextFormat::Parquet => {
            let rows =
                crate::data::parquet::read::<String>(path, &[field], &config.label_field, None)?;
            for row in rows {
                if let Ok((value, _)) = row.value {
                    values.insert(row.row, value);
                }
            }
        }
        TextFormat::Auto => unreachable!("resolved by format_of"),
    }
    Ok(values)
}

pub(crate) fn parse_json_record(
    raw: &[u8],
    config: &TextDataConfig,
) -> Result<(String, String), String> {
    let text = std::str::from_utf8(raw)
        .map_err(|err| format!("invalid UTF-8 (at byte {})", err.valid_up_to()))?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|err| format!("invalid JSON: {err}"))?;
    let field = |name: &str| {
        value
            .get(name)
            .ok_or_else(|| format!("no field \"{name}\""))
    };
    let text = field(&config.text_field)?
        .as_str()
        .ok_or_else(|| format!("field \"{}\" is not a string", config.text_field))?
        .to_string();
    let label = match field(&config.label_field)? {
        serde_json::Value::String(label) => label.trim().to_string(),
        serde_json::Value::Number(number) if number.is_u64() || number.is_i64() => {
            number.to_string()
        }
        _ => {
            return Err(format!(
                "field \"{}\" is neither a string nor an integer",
                config.label_field
            ));
        }
    };
    Ok((text, label))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TextDataConfig {
        TextDataConfig::default()
    }

    fn write(name: &str, bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn jsonl_with_string_and_integer_labels() {
        let (_dir, path) = write(
            "a.jsonl",
            b"{\"text\": \"hello\", \"label\": \"spam\"}\n\n{\"text\": \"bye\", \"label\": 3}\n",
        );
        let records = read(
            &path,
            &config(),
            None,
            OnError::Fail,
            &mut Skipped::default(),
        )
        .unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!((records[1].label.as_str(), records[1].line), ("3", 3));
    }

    #[test]
    fn bad_records_fail_with_their_line_or_are_skipped_and_counted() {
        let bytes = b"{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \"x\xff\", \"label\": \"a\"}\n{\"label\": \"b\"}\nnot json\n";
        let (_dir, path) = write("b.jsonl", bytes);
        let err = read(
            &path,
            &config(),
            None,
            OnError::Fail,
            &mut Skipped::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("b.jsonl:2: invalid UTF-8"),
            "{err}"
        );
        let mut skipped = Skipped::default();
        let records = read(&path, &config(), None, OnError::Skip, &mut skipped).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(skipped.count, 3);
        assert!(
            skipped.examples[1].ends_with("b.jsonl:3: no field \"text\""),
            "{skipped:?}"
        );
        assert!(
            skipped.examples[2].contains(":4: invalid JSON"),
            "{skipped:?}"
        );
    }

    #[test]
    fn csv_with_header_and_quoted_newlines() {
        let (_dir, path) = write(
            "c.csv",
            b"id,text,label\n1,\"two\nlines\",ham\n2,plain,spam\n3,bad\xfe,spam\n",
        );
        let mut skipped = Skipped::default();
        let records = read(&path, &config(), None, OnError::Skip, &mut skipped).unwrap();
        assert_eq!(records[0].text, "two\nlines");
        assert_eq!(records[1].line, 4);
        assert_eq!(skipped.count, 1);
        assert!(
            skipped.examples[0].contains("c.csv:5: field \"text\" is not valid UTF-8"),
            "{skipped:?}"
        );
        let (_dir, missing) = write("d.csv", b"body,label\nx,y\n");
        let err = read(
            &missing,
            &config(),
            None,
            OnError::Fail,
            &mut Skipped::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no column \"text\""), "{err}");
    }

    #[test]
    fn integer_classes_sort_numerically() {
        assert_eq!(
            crate::data::classes_of(["10", "2", "1"].into_iter()),
            ["1", "2", "10"]
        );
        assert_eq!(
            crate::data::classes_of(["spam", "ham"].into_iter()),
            ["ham", "spam"]
        );
    }
}
