//! Batches prepared on worker threads, in a fixed order, so the training step never waits on
//! decoding.
//!
//! Worker `w` of `W` prepares batches `w, w + W, w + 2W, …` into its own bounded channel and
//! the consumer reads the channels round-robin: batches arrive in order, memory stays bounded
//! by `workers × prefetch` batches, and the order does not depend on thread timing.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{Dataset, HostBatch, Split};

/// The order of the training split in `epoch` (counted from 0): a permutation seeded by the
/// run's seed and the epoch, so any epoch's order can be rebuilt on resume.
pub fn epoch_order(split: &Split, seed: u64, epoch: usize) -> Arc<Vec<u32>> {
    let mut order = split.indices.as_ref().clone();
    let epoch_seed = seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(epoch_seed));
    Arc::new(order)
}

/// Number of batches (the last may be partial) for `samples` at `batch_size`.
pub fn batch_count(samples: usize, batch_size: usize) -> usize {
    samples.div_ceil(batch_size)
}

/// What a [`BatchStream`] reads: `order` cut into batches, starting at batch `first`.
pub struct StreamPlan {
    pub order: Arc<Vec<u32>>,
    pub batch_size: usize,
    pub first: usize,
    pub workers: usize,
    pub prefetch: usize,
}

/// The batches of one pass, in order, prepared ahead by worker threads.
pub struct BatchStream {
    first: usize,
    next: usize,
    end: usize,
    receivers: Vec<Receiver<HostBatch>>,
    workers: Vec<JoinHandle<()>>,
    inline: Option<(Arc<dyn Dataset>, StreamPlan)>,
}

impl BatchStream {
    pub fn new(data: Arc<dyn Dataset>, plan: StreamPlan) -> Self {
        let end = batch_count(plan.order.len(), plan.batch_size);
        if plan.workers == 0 {
            return Self {
                first: plan.first,
                next: plan.first,
                end,
                receivers: Vec::new(),
                workers: Vec::new(),
                inline: Some((data, plan)),
            };
        }
        let (senders, receivers): (Vec<SyncSender<HostBatch>>, Vec<_>) = (0..plan.workers)
            .map(|_| sync_channel(plan.prefetch))
            .unzip();
        let workers = senders
            .into_iter()
            .enumerate()
            .map(|(worker, sender)| {
                let data = data.clone();
                let order = plan.order.clone();
                let (batch_size, first, stride) = (plan.batch_size, plan.first, plan.workers);
                std::thread::Builder::new()
                    .name(format!("stoke-data-{worker}"))
                    .spawn(move || {
                        for batch in (first + worker..end).step_by(stride) {
                            let start = batch * batch_size;
                            let indices = &order[start..(start + batch_size).min(order.len())];
                            if sender.send(data.batch(indices)).is_err() {
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

impl Iterator for BatchStream {
    type Item = HostBatch;

    fn next(&mut self) -> Option<HostBatch> {
        if self.next >= self.end {
            return None;
        }
        let batch = self.next;
        self.next += 1;
        if let Some((data, plan)) = &self.inline {
            let start = batch * plan.batch_size;
            let stop = (start + plan.batch_size).min(plan.order.len());
            return Some(data.batch(&plan.order[start..stop]));
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

    /// Sample `i` is a batch whose label is `i`.
    struct Counting(usize);

    impl Dataset for Counting {
        fn len(&self) -> usize {
            self.0
        }

        fn batch(&self, indices: &[u32]) -> HostBatch {
            HostBatch::Images {
                pixels: vec![0.0; indices.len()],
                shape: [indices.len(), 1, 1, 1],
                labels: indices.iter().map(|&i| i64::from(i)).collect(),
            }
        }
    }

    fn labels_of(workers: usize, first: usize) -> Vec<Vec<i64>> {
        let plan = StreamPlan {
            order: Arc::new((0..10).rev().collect()),
            batch_size: 3,
            first,
            workers,
            prefetch: 1,
        };
        BatchStream::new(Arc::new(Counting(10)), plan)
            .map(|batch| match batch {
                HostBatch::Images { labels, .. } => labels,
                other => panic!("unexpected {other:?}"),
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
    fn epoch_orders_are_seeded_permutations() {
        let split = Split::all(Arc::new(Counting(50)));
        let first = epoch_order(&split, 1, 0);
        assert_eq!(first, epoch_order(&split, 1, 0));
        assert_ne!(first, epoch_order(&split, 1, 1));
        let mut sorted = first.as_ref().clone();
        sorted.sort_unstable();
        assert_eq!(sorted, split.indices.as_ref().clone());
    }
}
