//! IDX files, the format of MNIST and Fashion-MNIST, gzipped or not.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::data::DataError;

/// Unsigned-byte IDX data: its dimensions and the bytes of its first items.
#[derive(Debug)]
pub struct IdxData {
    pub dims: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// `dir/stem`, or `dir/stem.gz` when only the gzipped file is there.
pub fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(stem), dir.join(format!("{stem}.gz"))]
        .into_iter()
        .find(|path| path.is_file())
}

/// Reads up to `limit` items of an unsigned-byte IDX file of `rank` dimensions.
pub fn read(path: &Path, rank: usize, limit: Option<usize>) -> Result<IdxData, DataError> {
    let corrupt = |detail: String| DataError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let file = File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader: Box<dyn Read> = if path.extension().is_some_and(|ext| ext == "gz") {
        Box::new(GzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };

    let mut magic = [0u8; 4];
    reader
        .read_exact(&mut magic)
        .map_err(|err| corrupt(format!("cannot read the IDX header: {err}")))?;
    if magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] as usize != rank {
        return Err(corrupt(format!(
            "not an unsigned-byte IDX file of {rank} dimensions (magic bytes {magic:02x?})"
        )));
    }
    let mut dims = Vec::with_capacity(rank);
    for _ in 0..rank {
        let mut size = [0u8; 4];
        reader
            .read_exact(&mut size)
            .map_err(|err| corrupt(format!("cannot read the IDX header: {err}")))?;
        dims.push(u32::from_be_bytes(size) as usize);
    }
    if let Some(limit) = limit {
        dims[0] = dims[0].min(limit);
    }
    let expected = checked_size(&dims, 0).map_err(corrupt)?;
    // The header is not trusted with the allocation: the data read decides how much.
    let mut bytes = Vec::with_capacity(expected.min(1 << 26));
    reader
        .take(expected as u64)
        .read_to_end(&mut bytes)
        .map_err(|err| corrupt(format!("cannot read the data: {err}")))?;
    if bytes.len() != expected {
        return Err(corrupt(format!(
            "truncated: the header promises {expected} bytes for {} items, the file holds {}",
            dims[0],
            bytes.len()
        )));
    }
    Ok(IdxData { dims, bytes })
}

/// The bytes `dims` hold after a header of `header` bytes, or why no file holds them (the
/// product overflows).
fn checked_size(dims: &[usize], header: usize) -> Result<usize, String> {
    dims.iter()
        .try_fold(1usize, |size, &dim| size.checked_mul(dim))
        .and_then(|data| data.checked_add(header))
        .ok_or_else(|| {
            format!("the header's dimensions {dims:?} promise more bytes than any file holds")
        })
}

/// The header of an unsigned-byte IDX file with `dims`.
pub fn header(dims: &[usize]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for &dim in dims {
        bytes.extend((dim as u32).to_be_bytes());
    }
    bytes
}

/// The dimensions in the header of the unsigned-byte IDX file `file` (at `path`), which
/// must hold exactly the data they promise.
pub fn read_header(file: &File, path: &Path) -> Result<Vec<usize>, DataError> {
    use std::os::unix::fs::FileExt;
    let corrupt = |detail: String| DataError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let mut magic = [0u8; 4];
    file.read_exact_at(&mut magic, 0)
        .map_err(|err| corrupt(format!("cannot read the IDX header: {err}")))?;
    if magic[..3] != [0, 0, 0x08] || !(1..=4).contains(&magic[3]) {
        return Err(corrupt(format!(
            "not an uncompressed unsigned-byte IDX file (magic bytes {magic:02x?})"
        )));
    }
    let mut sizes = vec![0u8; 4 * magic[3] as usize];
    file.read_exact_at(&mut sizes, 4)
        .map_err(|err| corrupt(format!("cannot read the IDX header: {err}")))?;
    let dims: Vec<usize> = sizes
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = checked_size(&dims, 4 + sizes.len()).map_err(corrupt)? as u64;
    let actual = file
        .metadata()
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if actual != expected {
        return Err(corrupt(format!(
            "the header promises {expected} bytes for {} items, the file holds {actual}",
            dims[0]
        )));
    }
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_idx(path: &Path, dims: &[u32], data: &[u8]) {
        let mut bytes = vec![0, 0, 8, dims.len() as u8];
        for dim in dims {
            bytes.extend(dim.to_be_bytes());
        }
        bytes.extend(data);
        if path.extension().is_some_and(|e| e == "gz") {
            let mut encoder = flate2::write::GzEncoder::new(
                File::create(path).unwrap(),
                flate2::Compression::fast(),
            );
            encoder.write_all(&bytes).unwrap();
            encoder.finish().unwrap();
        } else {
            std::fs::write(path, bytes).unwrap();
        }
    }

    #[test]
    fn reads_plain_and_gzipped_files_with_a_limit() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..24).collect();
        for name in ["a", "b.gz"] {
            let path = dir.path().join(name);
            write_idx(&path, &[3, 2, 4], &data);
            let idx = read(&path, 3, Some(2)).unwrap();
            assert_eq!(idx.dims, [2, 2, 4]);
            assert_eq!(idx.bytes, &data[..16]);
        }
    }

    #[test]
    fn truncated_and_foreign_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        write_idx(&path, &[3, 2, 4], &[0; 10]);
        let err = read(&path, 3, None).unwrap_err().to_string();
        assert!(err.contains("short") && err.contains("truncated"), "{err}");
        let err = read(&path, 1, None).unwrap_err().to_string();
        assert!(
            err.contains("not an unsigned-byte IDX file of 1 dimensions"),
            "{err}"
        );
    }
}
