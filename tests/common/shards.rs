//! IDX image shards for the tests of `stoke train --follow`: synthetic digits from `stoke
//! data synth`, the shipped MNIST digits written as shards, and shards dropped into a
//! followed directory as a writer would (through a temporary name), clean or with their
//! labels moved on.

use std::fs;
use std::path::Path;

use super::{repo, stoke};

/// `stoke data synth` into `dir`: `records` training records in shards of 52.
pub fn synth(dir: &Path, records: usize, seed: u64) {
    stoke()
        .args([
            "data",
            "synth",
            "--records",
            &records.to_string(),
            "--test-records",
            "20",
        ])
        .args([
            "--shard-size",
            "40KiB",
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(dir)
        .assert()
        .success();
}

/// Renames training shard `index` of `from` into `to` as shard `name`, labels file first
/// (the images file's arrival completes the pair), each through a temporary name.
pub fn drop_shard(from: &Path, index: usize, to: &Path, name: &str) {
    for kind in ["labels-idx1", "images-idx3"] {
        let source = from.join(format!("train-{index:05}-{kind}-ubyte"));
        let temp = to.join(format!(".{name}-{kind}-ubyte.tmp"));
        fs::copy(&source, &temp).unwrap();
        fs::rename(&temp, to.join(format!("{name}-{kind}-ubyte"))).unwrap();
    }
}

/// Moves every label of shard `name` in `dir` `by` classes on (of ten): a candidate trained
/// on it gets worse.
pub fn move_labels_on(dir: &Path, name: &str, by: u8) {
    let labels = dir.join(format!("{name}-labels-idx1-ubyte"));
    let mut bytes = fs::read(&labels).unwrap();
    for label in &mut bytes[8..] {
        *label = (*label + by) % 10;
    }
    fs::write(&labels, bytes).unwrap();
}

/// [`drop_shard`] with every label moved one class on.
pub fn drop_shard_with_labels_moved_on(from: &Path, index: usize, to: &Path, name: &str) {
    drop_shard(from, index, to, name);
    move_labels_on(to, name, 1);
}

/// The shipped MNIST `split` ("train" or "t10k"): images of 784 bytes and their labels.
pub fn mnist(split: &str) -> (Vec<Vec<u8>>, Vec<u8>) {
    let read = |kind: &str| {
        let path = repo().join(format!("datasets/mnist/{split}-{kind}-ubyte.gz"));
        let mut raw = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(fs::File::open(path).unwrap()),
            &mut raw,
        )
        .unwrap();
        raw
    };
    let images = read("images-idx3")[16..]
        .chunks_exact(784)
        .map(<[u8]>::to_vec)
        .collect();
    (images, read("labels-idx1")[8..].to_vec())
}

/// Writes `records` as the IDX pair `dir/name-{images-idx3,labels-idx1}-ubyte`, labels first.
pub fn write_idx(dir: &Path, name: &str, records: &[(&Vec<u8>, u8)]) {
    let count = (records.len() as u32).to_be_bytes();
    let mut images = [
        &[0, 0, 8, 3][..],
        &count,
        &28u32.to_be_bytes(),
        &28u32.to_be_bytes(),
    ]
    .concat();
    let mut labels = [&[0, 0, 8, 1][..], &count].concat();
    for (pixels, label) in records {
        images.extend_from_slice(pixels);
        labels.push(*label);
    }
    fs::write(dir.join(format!("{name}-labels-idx1-ubyte")), labels).unwrap();
    fs::write(dir.join(format!("{name}-images-idx3-ubyte")), images).unwrap();
}

/// An image-shards dataset of MNIST digits in `dir` (`shards.json` and one shard per split)
/// over the classes `classes`: `train` and `test` records.
pub fn write_mnist_dataset(
    dir: &Path,
    classes: usize,
    train: &[(&Vec<u8>, u8)],
    test: &[(&Vec<u8>, u8)],
) {
    fs::create_dir_all(dir).unwrap();
    write_idx(dir, "train-00000", train);
    write_idx(dir, "test-00000", test);
    let manifest = serde_json::json!({
        "format": "stoke-shards", "version": 1, "records": "images",
        "classes": (0..classes).map(|c| c.to_string()).collect::<Vec<_>>(),
        "image": {"channels": 1, "height": 28, "width": 28},
        "normalization": {"mean": [0.1307], "std": [0.3081]},
        "splits": {
            "train": [{"name": "train-00000", "records": train.len()}],
            "test": [{"name": "test-00000", "records": test.len()}],
        },
    });
    fs::write(dir.join("shards.json"), manifest.to_string()).unwrap();
}
