//! IDX image shards: a pair `<name>-images-idx3-ubyte` and `<name>-labels-idx1-ubyte`, as
//! `stoke data pack` and `stoke data synth` write them, taken once both files are there.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::incoming::{Shard, ShardKind, replay_gone};
use crate::Error;
use crate::data::image::{ImageSet, Origins, idx};
use crate::data::{Dataset, ImageShape, Normalization, normalized};

const IMAGES_SUFFIX: &str = "-images-idx3-ubyte";
const LABELS_SUFFIX: &str = "-labels-idx1-ubyte";

/// The run's images: their shape, class count and normalization.
pub struct IdxShards {
    pub shape: ImageShape,
    pub classes: usize,
    pub normalization: Normalization,
}

impl IdxShards {
    /// Shard `name`'s images and labels, checked against the run's shape and classes.
    fn images(&self, dir: &Path, name: &str) -> Result<ImageSet, String> {
        let [images_path, labels_path] = self.pair(dir, name);
        let images = idx::read(&images_path, 3, None).map_err(|err| err.to_string())?;
        let labels = idx::read(&labels_path, 1, None).map_err(|err| err.to_string())?;
        let (count, height, width) = (images.dims[0], images.dims[1], images.dims[2]);
        let shape = self.shape;
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
        if let Some(record) = labels
            .bytes
            .iter()
            .position(|&l| usize::from(l) >= self.classes)
        {
            return Err(format!(
                "record {record} has label {}, out of range for the run's {} classes",
                labels.bytes[record], self.classes
            ));
        }
        Ok(ImageSet {
            shape,
            pixels: images.bytes,
            labels: labels.bytes.into_iter().map(u16::from).collect(),
            origins: Origins::Records(images_path),
        })
    }

    fn pair(&self, dir: &Path, name: &str) -> [PathBuf; 2] {
        [
            dir.join(format!("{name}{IMAGES_SUFFIX}")),
            dir.join(format!("{name}{LABELS_SUFFIX}")),
        ]
    }

    /// The reservoir's records of `dir`: their image bytes, one after the other, and their
    /// labels; each shard's files are opened once.
    fn read_records(
        &self,
        dir: &Path,
        items: &[(String, u32)],
    ) -> Result<(Vec<u8>, Vec<u16>), Error> {
        use std::os::unix::fs::FileExt;
        let size = self.shape.len();
        let mut shards: HashMap<&str, (fs::File, PathBuf, Vec<u8>)> = HashMap::new();
        let (mut pixels, mut labels) = (
            vec![0u8; items.len() * size],
            Vec::with_capacity(items.len()),
        );
        for ((name, record), image) in items.iter().zip(pixels.chunks_exact_mut(size)) {
            if !shards.contains_key(name.as_str()) {
                let [images_path, labels_path] = self.pair(dir, name);
                let file = fs::File::open(&images_path)
                    .map_err(|err| replay_gone(dir, format!("{}: {err}", images_path.display())))?;
                let shard_labels =
                    idx::read(&labels_path, 1, None).map_err(|err| replay_gone(dir, err))?;
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
}

impl ShardKind for IdxShards {
    fn describe(&self) -> &'static str {
        "IDX pairs <name>-images-idx3-ubyte and <name>-labels-idx1-ubyte"
    }

    fn shard_of(&self, dir: &Path, file: &str) -> Option<String> {
        let name = file.strip_suffix(IMAGES_SUFFIX)?;
        dir.join(format!("{name}{LABELS_SUFFIX}"))
            .is_file()
            .then(|| name.to_string())
    }

    fn files(&self, dir: &Path, name: &str) -> Vec<PathBuf> {
        self.pair(dir, name).to_vec()
    }

    fn load(&self, dir: &Path, name: &str) -> Result<Arc<dyn Dataset>, String> {
        let set = self.images(dir, name)?;
        Ok(normalized(Arc::new(set), &self.normalization))
    }

    fn training_set(
        &self,
        dir: &Path,
        shard: &Shard,
        replay: &[(String, u32)],
    ) -> Result<Arc<dyn Dataset>, Error> {
        let mut set = self
            .images(dir, &shard.name)
            .map_err(|err| replay_gone(dir, err))?;
        let (pixels, labels) = self.read_records(dir, replay)?;
        set.pixels.extend(pixels);
        set.labels.extend(labels);
        set.origins = Origins::Unknown;
        Ok(normalized(Arc::new(set), &self.normalization))
    }
}
