//! Promotion into a models directory: each promoted candidate is exported as an artifact
//! `vNNNN/` (written under a temporary name, then renamed), `current` is a symbolic link
//! swapped atomically onto it (a new link renamed over the old), and a server is told to
//! reload (`POST /admin/reload` to `--serve-url`). `stoke promote RUN --to DIR` puts a run's
//! checkpoint there as the next version (how a base run is first served), and `stoke promote
//! --rollback DIR` points `current` back one version. A directory holding anything else is
//! not stoke's and is refused before anything is written.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Error;
use crate::export::artifact::{self, ExportOptions};
use crate::run::CheckpointChoice;

pub const CURRENT: &str = "current";

/// A models directory: `vNNNN/` artifacts and the `current` link.
pub struct Models {
    pub dir: PathBuf,
}

impl Models {
    /// Opens (creating) `dir`, refusing one that holds anything but versions, the link and
    /// leftovers of interrupted writes.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::io(dir, source))?;
        let entries = std::fs::read_dir(dir).map_err(|source| Error::io(dir, source))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = version_number(&name).is_some()
                || name == CURRENT
                || name.starts_with(".tmp-")
                || name.starts_with(".current-");
            if !ours {
                return Err(Error::Usage(format!(
                    "{} is not a stoke models directory: it holds {name:?}, and stoke's hold only vNNNN/ artifacts and the `current` link; name an empty or new directory",
                    dir.display()
                )));
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The versions present, oldest first.
    pub fn versions(&self) -> Vec<String> {
        let mut versions: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| version_number(name).is_some())
            .collect();
        versions.sort();
        versions
    }

    /// The version `current` points at.
    pub fn current(&self) -> Option<String> {
        let target = std::fs::read_link(self.dir.join(CURRENT)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// The number of the newest version present (0 when there is none).
    pub fn newest_number(&self) -> u32 {
        self.versions()
            .iter()
            .filter_map(|v| version_number(v))
            .max()
            .unwrap_or(0)
    }

    /// Puts checkpoint `choice` of the run at `run` into the models directory `dir` (made if
    /// need be) as its next version and points `current` at it (`stoke promote RUN --to
    /// MODELS`): how a base run becomes the first served version. The run and its checkpoint
    /// are checked before the directory is touched. Returns the version and the one it
    /// replaced.
    pub fn publish(
        dir: &Path,
        run: &Path,
        choice: &CheckpointChoice,
    ) -> Result<(String, Option<String>), Error> {
        let (run_dir, _) = crate::run::RunDir::open(run)?;
        let checkpoint = run_dir.checkpoints().open(choice)?.name;
        let models = Self::open(dir)?;
        let version = version_name(models.newest_number() + 1);
        let replaced = models.current();
        models.write(run, &checkpoint, &version, replaced.clone())?;
        models.point(&version)?;
        Ok((version, replaced))
    }

    /// Exports checkpoint `checkpoint` of `run` as `version` (replacing a partial one), with
    /// `parent` as its lineage's parent when the checkpoint's state names none.
    pub fn write(
        &self,
        run: &Path,
        checkpoint: &str,
        version: &str,
        parent: Option<String>,
    ) -> Result<(), Error> {
        let final_dir = self.dir.join(version);
        let temp = self.dir.join(format!(".tmp-{version}"));
        for stale in [&temp, &final_dir] {
            if stale.exists() {
                std::fs::remove_dir_all(stale).map_err(|source| Error::io(stale, source))?;
            }
        }
        artifact::export(
            run,
            &ExportOptions {
                checkpoint: CheckpointChoice::Named(checkpoint.to_string()),
                out: temp.clone(),
                replace: true,
                onnx: false,
                profile: true,
                parent,
            },
        )?;
        std::fs::rename(&temp, &final_dir).map_err(|source| Error::io(&final_dir, source))
    }

    /// Points `current` at `version`, atomically.
    pub fn point(&self, version: &str) -> Result<(), Error> {
        let link = self.dir.join(CURRENT);
        let temp = self.dir.join(format!(".current-{version}"));
        let _ = std::fs::remove_file(&temp);
        std::os::unix::fs::symlink(version, &temp).map_err(|source| Error::io(&temp, source))?;
        std::fs::rename(&temp, &link).map_err(|source| Error::io(&link, source))
    }

    /// Points `current` one version back; returns (from, to).
    pub fn rollback(&self) -> Result<(String, String), Error> {
        let versions = self.versions();
        let current = self.current().ok_or_else(|| {
            Error::Usage(format!(
                "{} has no `current` version to roll back from",
                self.dir.display()
            ))
        })?;
        let position = versions.iter().position(|v| *v == current).unwrap_or(0);
        if position == 0 {
            return Err(Error::Usage(format!(
                "{} serves {current}, its first version: there is none before it",
                self.dir.display()
            )));
        }
        let previous = versions[position - 1].clone();
        self.point(&previous)?;
        Ok((current, previous))
    }
}

/// `vNNNN` → NNNN.
pub fn version_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix('v')?;
    (digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())?
}

pub fn version_name(number: u32) -> String {
    format!("v{number:04}")
}

/// Asks the server at `url` (`http://host:port`) to reload; returns its JSON answer. A server
/// that does not answer is an error that names it; the caller decides whether to go on.
pub fn reload(url: &str) -> Result<serde_json::Value, String> {
    let address = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--serve-url {url}: expected http://HOST:PORT"))?
        .trim_end_matches('/');
    let mut stream = TcpStream::connect(address)
        .map_err(|err| format!("the server at {url} does not answer: {err}"))?;
    let timeout = Some(Duration::from_secs(120));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    let request = format!(
        "POST /admin/reload HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|err| format!("the server at {url} does not answer: {err}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|err| format!("the server at {url} did not finish answering: {err}"))?;
    let status = response.split(' ').nth(1).unwrap_or("?").to_string();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    // A chunked body: the JSON object is between the first '{' and the last '}'.
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(start), Some(end)) => &body[start..=end],
        _ => "null",
    };
    let answer: serde_json::Value = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
    match status.as_str() {
        "200" => Ok(answer),
        _ => Err(format!(
            "the server at {url} refused the reload ({status}): {answer}"
        )),
    }
}
