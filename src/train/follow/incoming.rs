//! The followed directory: which shards have landed, and reading one. A shard is an IDX pair,
//! `<name>-images-idx3-ubyte` and `<name>-labels-idx1-ubyte`, as `stoke data pack` and
//! `stoke data synth` write them; writers rename each file into the directory when it is
//! complete, so a name starting with `.` or ending in `.tmp` or `.part` is still being
//! written and is left alone, and a pair is taken once both files are there. A shard that
//! does not read (truncated, not IDX, another image shape, a label outside the classes) is
//! moved into `rejected/` beside a `<name>.reason.txt`, and following goes on.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::Error;
use crate::data::ImageShape;
use crate::data::image::{ImageSet, Origins, idx};
use crate::files::write_atomic;

const IMAGES_SUFFIX: &str = "-images-idx3-ubyte";
const LABELS_SUFFIX: &str = "-labels-idx1-ubyte";
pub const REJECTED_DIR: &str = "rejected";

/// A shard read whole, with what the ledger records of it.
pub struct Shard {
    pub name: String,
    pub set: ImageSet,
    /// Both files' bytes.
    pub bytes: u64,
    /// SHA-256 of the images file followed by the labels file.
    pub sha256: String,
}

/// The complete shards in `dir` (names, sorted), whether or not they were taken before.
pub fn landed(dir: &Path) -> Result<Vec<String>, Error> {
    let entries = fs::read_dir(dir).map_err(|source| Error::io(dir, source))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::io(dir, source))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with('.') || file.ends_with(".tmp") || file.ends_with(".part") {
            continue;
        }
        let Some(name) = file.strip_suffix(IMAGES_SUFFIX) else {
            continue;
        };
        if dir.join(format!("{name}{LABELS_SUFFIX}")).is_file() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Both files' bytes together, if both can be read.
pub fn size(dir: &Path, name: &str) -> Option<u64> {
    files(dir, name)
        .iter()
        .map(|path| fs::metadata(path).ok().map(|meta| meta.len()))
        .sum()
}

pub fn files(dir: &Path, name: &str) -> [PathBuf; 2] {
    [
        dir.join(format!("{name}{IMAGES_SUFFIX}")),
        dir.join(format!("{name}{LABELS_SUFFIX}")),
    ]
}

/// Reads shard `name` of `dir`, checked against the run's image shape and class count; the
/// error is the reason it is rejected.
pub fn read(dir: &Path, name: &str, shape: ImageShape, classes: usize) -> Result<Shard, String> {
    let [images_path, labels_path] = files(dir, name);
    let mut hasher = Sha256::new();
    let mut bytes = 0;
    for path in [&images_path, &labels_path] {
        let content = fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
        bytes += content.len() as u64;
        hasher.update(&content);
    }
    let images = idx::read(&images_path, 3, None).map_err(|err| err.to_string())?;
    let labels = idx::read(&labels_path, 1, None).map_err(|err| err.to_string())?;
    let (count, height, width) = (images.dims[0], images.dims[1], images.dims[2]);
    if (shape.channels, shape.height, shape.width) != (1, height, width) {
        return Err(format!(
            "holds images of 1×{height}×{width}; the run's are {}×{}×{}",
            shape.channels, shape.height, shape.width
        ));
    }
    if labels.dims[0] != count {
        return Err(format!(
            "holds {} labels for {count} images",
            labels.dims[0]
        ));
    }
    if count == 0 {
        return Err("holds no records".into());
    }
    if let Some(record) = labels.bytes.iter().position(|&l| usize::from(l) >= classes) {
        return Err(format!(
            "record {record} has label {}, out of range for the run's {classes} classes",
            labels.bytes[record]
        ));
    }
    Ok(Shard {
        name: name.to_string(),
        set: ImageSet {
            shape,
            pixels: images.bytes,
            labels: labels.bytes.into_iter().map(u16::from).collect(),
            origins: Origins::Records(images_path),
        },
        bytes,
        sha256: format!("{:x}", hasher.finalize()),
    })
}

/// Moves shard `name` out of `dir` into `dir/rejected/`, after writing why beside it.
pub fn reject(dir: &Path, name: &str, reason: &str) -> Result<PathBuf, Error> {
    let rejected = dir.join(REJECTED_DIR);
    fs::create_dir_all(&rejected).map_err(|source| Error::io(&rejected, source))?;
    let reason_path = rejected.join(format!("{name}.reason.txt"));
    write_atomic(&reason_path, format!("{reason}\n").as_bytes())?;
    for path in files(dir, name) {
        if let Some(file) = path.file_name() {
            let to = rejected.join(file);
            fs::rename(&path, &to).map_err(|source| Error::io(&path, source))?;
        }
    }
    Ok(reason_path)
}

/// The reservoir's records `(shard, record)` of `dir`: their image bytes, one after the
/// other, and their labels; each shard's files are opened once.
pub fn read_records(
    dir: &Path,
    items: &[(String, u32)],
    shape: ImageShape,
) -> Result<(Vec<u8>, Vec<u16>), Error> {
    use std::os::unix::fs::FileExt;
    let gone = |err: String| {
        Error::Usage(format!(
            "replay reads the shards it took, which must stay in {}: {err}",
            dir.display()
        ))
    };
    let size = shape.len();
    let mut shards: HashMap<&str, (fs::File, PathBuf, Vec<u8>)> = HashMap::new();
    let (mut pixels, mut labels) = (
        vec![0u8; items.len() * size],
        Vec::with_capacity(items.len()),
    );
    for ((name, record), image) in items.iter().zip(pixels.chunks_exact_mut(size)) {
        if !shards.contains_key(name.as_str()) {
            let [images_path, labels_path] = files(dir, name);
            let file = fs::File::open(&images_path)
                .map_err(|err| gone(format!("{}: {err}", images_path.display())))?;
            let shard_labels =
                idx::read(&labels_path, 1, None).map_err(|err| gone(err.to_string()))?;
            shards.insert(name, (file, images_path, shard_labels.bytes));
        }
        let (file, path, shard_labels) = &shards[name.as_str()];
        // An IDX header of 3 dimensions: 4 magic bytes and three 4-byte sizes.
        file.read_exact_at(image, 16 + u64::from(*record) * size as u64)
            .map_err(|source| Error::io(path, source))?;
        labels.push(u16::from(shard_labels[*record as usize]));
    }
    Ok((pixels, labels))
}
