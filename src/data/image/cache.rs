//! The photo cache: each decoded photo at its cached size (`Resize::cache`), kept in memory
//! while the cache fits its share of `data.memory_budget` and otherwise written once to an
//! unlinked file in the system's temporary directory (`TMPDIR`) and read back per sample
//! through the page cache, so a photo set larger than memory trains with the same pixels.
//! The file has no name from the moment it is made: a killed run leaves nothing behind.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::transform::Picture;
use crate::data::DataError;

/// The share of `data.memory_budget` the photos may hold in memory; the rest is left for
/// batches and indices, which the budget check counts afterwards.
const MEMORY_SHARE: f64 = 0.75;

/// Cached photos, in memory or on disk, in the order they were pushed.
pub struct PictureCache {
    channels: usize,
    in_memory: Vec<Picture>,
    /// `None` while everything is in memory.
    disk: Option<DiskCache>,
    memory_limit: Option<u64>,
    memory_bytes: u64,
}

struct DiskCache {
    path: PathBuf,
    file: File,
    /// Where each photo's pixels start, with its width and height.
    entries: Vec<(u64, u32, u32)>,
    end: u64,
}

impl PictureCache {
    /// An empty cache for photos of `channels` channels; `budget` is `data.memory_budget` in
    /// bytes, if set.
    pub fn new(channels: usize, budget: Option<u64>) -> Self {
        Self {
            channels,
            in_memory: Vec::new(),
            disk: None,
            memory_limit: budget.map(|b| (b as f64 * MEMORY_SHARE) as u64),
            memory_bytes: 0,
        }
    }

    /// Whether the photos went to disk.
    pub fn on_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// Bytes the cache holds in memory (for the disk cache, its index).
    pub fn resident_bytes(&self) -> usize {
        self.memory_bytes as usize + self.disk.as_ref().map_or(0, |disk| disk.entries.len() * 16)
    }

    /// Adds the next photo: to memory while it fits the limit, then (with every photo before
    /// it, moved out of memory) to the disk cache.
    pub fn push(&mut self, picture: Picture) -> Result<(), DataError> {
        let size = picture.pixels.len() as u64;
        let over = self
            .memory_limit
            .is_some_and(|limit| self.memory_bytes + size > limit);
        if self.disk.is_none() && over {
            let mut disk = DiskCache::create()?;
            for held in std::mem::take(&mut self.in_memory) {
                disk.append(&held)?;
            }
            self.memory_bytes = 0;
            self.disk = Some(disk);
        }
        match &mut self.disk {
            Some(disk) => disk.append(&picture),
            None => {
                self.memory_bytes += size;
                self.in_memory.push(picture);
                Ok(())
            }
        }
    }

    /// Photo `index`, read back from disk when it went there.
    pub fn get(&self, index: usize) -> std::borrow::Cow<'_, Picture> {
        let Some(disk) = &self.disk else {
            return std::borrow::Cow::Borrowed(&self.in_memory[index]);
        };
        let (offset, width, height) = disk.entries[index];
        let (width, height) = (width as usize, height as usize);
        let mut pixels = vec![0u8; width * height * self.channels];
        if let Err(err) = disk.file.read_exact_at(&mut pixels, offset) {
            // The file is this process's own and unlinked; a failing read is the disk failing.
            panic!(
                "reading the photo cache {} failed: {err}",
                disk.path.display()
            );
        }
        std::borrow::Cow::Owned(Picture {
            width,
            height,
            channels: self.channels,
            pixels,
        })
    }
}

impl DiskCache {
    fn create() -> Result<Self, DataError> {
        let dir = std::env::temp_dir();
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_nanos());
        let path = dir.join(format!(
            "stoke-photos-{}-{unique}.cache",
            std::process::id()
        ));
        let io = |source| DataError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        // Unlinked at once: the open file lives until the process ends, however it ends.
        std::fs::remove_file(&path).map_err(io)?;
        Ok(Self {
            path,
            file,
            entries: Vec::new(),
            end: 0,
        })
    }

    fn append(&mut self, picture: &Picture) -> Result<(), DataError> {
        (&self.file)
            .write_all(&picture.pixels)
            .map_err(|source| DataError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.entries
            .push((self.end, picture.width as u32, picture.height as u32));
        self.end += picture.pixels.len() as u64;
        Ok(())
    }
}
