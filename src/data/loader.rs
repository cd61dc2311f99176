//! Batches prepared on worker threads, in a fixed order, so the training step never waits on
//! decoding.
//!
//! Worker `w` of `W` prepares batches `w, w + W, w + 2W, …` into its own bounded channel and
//! the consumer reads the channels round-robin: batches arrive in order, memory stays bounded
//! by `workers × prefetch` batches, and the order does not depend on thread timing.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{AnyBatch, BatchContext, Dataset, Split};

/// The order of the training split in `epoch` (counted from 0), seeded by the run's seed and
/// the epoch, so any epoch's order (and with it a streamed split's shuffle buffer at any
/// position) can be rebuilt on resume.
pub fn epoch_order(split: &Split, seed: u64, epoch: usize) -> Arc<Vec<u32>> {
    let epoch_seed = seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = ChaCha8Rng::seed_from_u64(epoch_seed);
    match &split.ordering {
        Ordering::Permutation => {
            let mut order = split.indices.as_ref().clone();
            order.shuffle(&mut rng);
            Arc::new(order)
        }
        Ordering::ShardBuffer {
            shard_starts,
            buffer,
        } => Arc::new(shuffle_through_buffer(
            &split.indices,
            shard_starts,
            *buffer,
            &mut rng,
        )),
    }
}

/// How a split's samples are shuffled each epoch.
#[derive(Debug, Clone)]
pub enum Ordering {
    /// A uniform random permutation: for data held in memory.
    Permutation,
    /// What a streaming reader does to data on disk: the shards in a random order, their
    /// records read in sequence through a shuffle buffer of `buffer` records, each output
    /// drawn at random from the buffer. Reads stay nearly sequential (within the shard being
    /// read and the buffer's recent past), so the page cache and read-ahead work.
    /// `shard_starts[s]` is the first sample index of shard `s`; the last entry is the total.
    ShardBuffer {
        shard_starts: Arc<Vec<u32>>,
        buffer: usize,
    },
}

/// The order a shuffle buffer emits `indices` (sorted) in, simulated over indices alone so
/// that it costs 4 bytes a sample and no I/O, and can be rebuilt exactly for a resumed run.
fn shuffle_through_buffer(
    indices: &[u32],
    shard_starts: &[u32],
    buffer: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<u32> {
    let mut shards: Vec<usize> = (0..shard_starts.len().saturating_sub(1)).collect();
    shards.shuffle(rng);
    let mut order = Vec::with_capacity(indices.len());
    let mut pool = Vec::with_capacity(buffer.min(indices.len()));
    for shard in shards {
        let first = indices.partition_point(|&i| i < shard_starts[shard]);
        let end = indices.partition_point(|&i| i < shard_starts[shard + 1]);
        for &index in &indices[first..end] {
            if pool.len() < buffer {
                pool.push(index);
            } else {
                let slot = rng.random_range(0..buffer);
                order.push(std::mem::replace(&mut pool[slot], index));
            }
        }
    }
    pool.shuffle(rng);
    order.extend(pool);
    order
}

/// One of `count` equal parts of a stream of batches: rank `index` of a distributed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: usize,
    pub count: usize,
}

impl Part {
    /// All of it: one process.
    pub const WHOLE: Part = Part { index: 0, count: 1 };
}

/// The samples of `order` that `part` takes when `order` is cut into groups of
/// `part.count × batch` samples (one global step, or one round of evaluation batches) and
/// part `i` takes the `i`-th `batch` samples of each group. Cut into batches of `batch`, the
/// result gives a part one batch per group, in order; in the last group, which may be short,
/// a part's batch may be smaller or missing.
pub fn part_of_batches(order: &Arc<Vec<u32>>, batch: usize, part: Part) -> Arc<Vec<u32>> {
    if part.count == 1 {
        return order.clone();
    }
    let group = batch * part.count;
    let taken = order
        .chunks(group)
        .flat_map(|group| {
            let start = (part.index * batch).min(group.len());
            &group[start..(start + batch).min(group.len())]
        })
        .copied()
        .collect();
    Arc::new(taken)
}

/// Number of batches (the last may be partial) for `samples` at `batch_size`.
pub fn batch_count(samples: usize, batch_size: usize) -> usize {
    samples.div_ceil(batch_size)
}

/// What a [`BatchStream`] reads: `order` cut into batches (one per optimizer step, or per
/// evaluation round), each cut into passes of `pass_size` samples, starting at batch `first`.
pub struct StreamPlan {
    pub order: Arc<Vec<u32>>,
    pub batch_size: usize,
    /// Samples per forward pass: `batch_size` over the step's gradient accumulation.
    pub pass_size: usize,
    pub first: usize,
    pub workers: usize,
    pub prefetch: usize,
}

/// The passes of batch `batch` of `plan`, made by `data` in `context`.
fn passes(data: &dyn Dataset, plan: &StreamPlan, batch: usize, context: &BatchContext) -> Passes {
    let start = batch * plan.batch_size;
    let indices = &plan.order[start..(start + plan.batch_size).min(plan.order.len())];
    indices
        .chunks(plan.pass_size.max(1))
        .map(|pass| data.batch(pass, context))
        .collect()
}

/// One batch's passes, on the device.
pub type Passes = Vec<AnyBatch>;

/// The batches of one pass over a split, in order, prepared ahead by worker threads.
pub struct BatchStream {
    first: usize,
    next: usize,
    end: usize,
    receivers: Vec<Receiver<Passes>>,
    workers: Vec<JoinHandle<()>>,
    inline: Option<(Arc<dyn Dataset>, StreamPlan, BatchContext)>,
}

impl BatchStream {
    pub fn new(data: Arc<dyn Dataset>, plan: StreamPlan, context: BatchContext) -> Self {
        let end = batch_count(plan.order.len(), plan.batch_size);
        if plan.workers == 0 {
            return Self {
                first: plan.first,
                next: plan.first,
                end,
                receivers: Vec::new(),
                workers: Vec::new(),
                inline: Some((data, plan, context)),
            };
        }
        let (senders, receivers): (Vec<SyncSender<Passes>>, Vec<_>) = (0..plan.workers)
            .map(|_| sync_channel(plan.prefetch))
            .unzip();
        let plan = Arc::new(plan);
        let workers = senders
            .into_iter()
            .enumerate()
            .map(|(worker, sender)| {
                let (data, plan, context) = (data.clone(), plan.clone(), context.clone());
                std::thread::Builder::new()
                    .name(format!("stoke-data-{worker}"))
                    .spawn(move || {
                        yield_to_the_model();
                        for batch in (plan.first + worker..end).step_by(plan.workers) {
                            if sender
                                .send(passes(data.as_ref(), &plan, batch, &context))
                                .is_err()
                            {
                                return; // The consumer stopped early.
                            }
                        }
                    })
                    .expect("cannot spawn a data worker thread")
            })
            .collect();
        Self {
            first: plan.first,
            next: plan.first,
            end,
            receivers,
            workers,
            inline: None,
        }
    }

    /// Batches left in this pass.
    pub fn remaining(&self) -> usize {
        self.end - self.next
    }
}

/// Runs the calling data worker only on CPU time the training step leaves idle (Linux's
/// `SCHED_IDLE`). On a CPU backend the step's threads use every core: a worker scheduled
/// beside them delays one of them, and every parallel region waits for its slowest thread,
/// so the whole step pays for it (about 10 % of an MLP step on 2 cores). At idle priority a
/// worker runs while the step waits (for the next batch, the GPU, or between operations);
/// if the step ever starves, the cores it leaves idle go to the worker.
fn yield_to_the_model() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: changes the calling thread's scheduling policy (pid 0 is this thread); a
        // failure only leaves the worker at normal priority.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    }
}

impl Iterator for BatchStream {
    type Item = Passes;

    fn next(&mut self) -> Option<Passes> {
        if self.next >= self.end {
            return None;
        }
        let batch = self.next;
        self.next += 1;
        if let Some((data, plan, context)) = &self.inline {
            return Some(passes(data.as_ref(), plan, batch, context));
        }
        let worker = (batch - self.first) % self.receivers.len();
        Some(
            self.receivers[worker]
                .recv()
                .expect("a data worker thread stopped unexpectedly"),
        )
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        // Closing the channels stops the workers at their next send.
        self.receivers.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::data::{DeviceBatch, HostBatch, Samples, Targets};
    use burn::prelude::Device;

    /// Sample `i` is a batch whose label is `i`.
    struct Counting(usize);

    impl Samples for Counting {
        fn len(&self) -> usize {
            self.0
        }

        fn batch(&self, indices: &[u32]) -> HostBatch {
            HostBatch::Images {
                pixels: vec![0.0; indices.len()],
                shape: [indices.len(), 1, 1, 1],
                labels: indices.iter().map(|&i| i64::from(i)).collect(),
                mixed: None,
            }
        }

        fn resident_bytes(&self) -> usize {
            0
        }

        fn sample_bytes(&self) -> usize {
            12
        }
    }

    fn labels_of(workers: usize, first: usize) -> Vec<Vec<i64>> {
        let plan = StreamPlan {
            order: Arc::new((0..10).rev().collect()),
            batch_size: 3,
            pass_size: 3,
            first,
            workers,
            prefetch: 1,
        };
        let context = BatchContext {
            device: Device::flex(),
            seed: 0,
            epoch: Some(0),
        };
        BatchStream::new(Arc::new(Counting(10)), plan, context)
            .map(|mut passes| {
                let batch: DeviceBatch = passes.pop().unwrap().take().unwrap();
                match batch.targets {
                    Targets::Classes(labels) => labels.to_data().iter::<i64>().collect(),
                    other => panic!("unexpected {other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn batches_arrive_in_order_whatever_the_worker_count() {
        let expected = vec![vec![9, 8, 7], vec![6, 5, 4], vec![3, 2, 1], vec![0]];
        for workers in [0, 1, 2, 3, 5] {
            assert_eq!(labels_of(workers, 0), expected, "{workers} workers");
            assert_eq!(
                labels_of(workers, 2),
                expected[2..],
                "{workers} workers from batch 2"
            );
        }
    }

    #[test]
    fn parts_take_their_slice_of_each_group() {
        let order = Arc::new((0..11).collect::<Vec<u32>>());
        let part = |index| part_of_batches(&order, 3, Part { index, count: 2 });
        // Groups of 6: [0..6), [6..11); rank 0 takes the first 3 of each, rank 1 the rest.
        assert_eq!(*part(0), [0, 1, 2, 6, 7, 8]);
        assert_eq!(*part(1), [3, 4, 5, 9, 10]);
        let short = Arc::new((0..7).collect::<Vec<u32>>());
        let second = part_of_batches(&short, 3, Part { index: 1, count: 2 });
        assert_eq!(*second, [3, 4, 5], "no batch in the short last group");
        assert!(Arc::ptr_eq(
            &part_of_batches(&order, 3, Part::WHOLE),
            &order
        ));
    }

    #[test]
    fn epoch_orders_are_seeded_permutations() {
        let split = Split::all(Arc::new(Counting(50)));
        let first = epoch_order(&split, 1, 0);
        assert_eq!(first, epoch_order(&split, 1, 0));
        assert_ne!(first, epoch_order(&split, 1, 1));
        let mut sorted = first.as_ref().clone();
        sorted.sort_unstable();
        assert_eq!(sorted, split.indices.as_ref().clone());
    }

    fn sharded(indices: Vec<u32>, buffer: usize) -> Split {
        let mut split = Split::new(Arc::new(Counting(100)), indices);
        split.ordering = Ordering::ShardBuffer {
            shard_starts: Arc::new(vec![0, 30, 60, 100]),
            buffer,
        };
        split
    }

    #[test]
    fn shard_buffer_orders_are_seeded_permutations_of_the_split() {
        let indices: Vec<u32> = (0..100).filter(|i| i % 7 != 0).collect();
        let split = sharded(indices.clone(), 8);
        let order = epoch_order(&split, 3, 0);
        assert_eq!(order, epoch_order(&split, 3, 0));
        assert_ne!(order, epoch_order(&split, 3, 1));
        let mut sorted = order.as_ref().clone();
        sorted.sort_unstable();
        assert_eq!(sorted, indices);
    }

    #[test]
    fn a_one_record_buffer_reads_whole_shards_in_sequence() {
        let order = epoch_order(&sharded((0..100).collect(), 1), 5, 0);
        let shard_of = |i: u32| [30, 60, 100].iter().position(|&end| i < end).unwrap();
        // Each shard's records come out together and in file order.
        let runs: Vec<usize> = order.iter().map(|&i| shard_of(i)).collect();
        let changes = runs.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!(changes, 2, "{order:?}");
        assert!(
            order
                .windows(2)
                .all(|w| shard_of(w[0]) != shard_of(w[1]) || w[1] == w[0] + 1)
        );
    }
}
