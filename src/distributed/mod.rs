//! Data-parallel training on several processes, on one machine or many, through MPI. This
//! module owns the world a process runs in: its rank and the world's size (from the MPI
//! launcher: `mpirun`, `srun`), its rank on its own machine (which GPU and how many CPU threads
//! it takes), the few collectives the trainer needs (sums of f32 and f64 buffers, fingerprints
//! compared across ranks), how a failing rank ends the job, and `stoke train --nproc N`, which
//! launches `mpirun` itself.
//!
//! MPI is behind the `distributed` cargo feature, so a default build needs no MPI library; a
//! default build started by a launcher as one of several processes refuses with the command
//! that builds the feature. Without a launcher every process is a world of one and every
//! collective is the identity.

#[cfg(feature = "distributed")]
mod comm;
mod gradients;
mod launch;

use std::sync::OnceLock;

pub use gradients::GradientReducer;
pub use launch::launch;

use crate::Error;

/// This process's place among the processes of one run.
#[derive(Debug)]
pub struct World {
    rank: usize,
    size: usize,
    local_rank: usize,
    local_size: usize,
}

static WORLD: OnceLock<World> = OnceLock::new();

/// The world of this process: a world of one until [`init`] joined an MPI job.
pub fn world() -> &'static World {
    WORLD.get_or_init(|| World {
        rank: 0,
        size: 1,
        local_rank: 0,
        local_size: 1,
    })
}

/// Held by `main` while the process runs: leaving MPI (`MPI_Finalize`) when dropped.
pub struct Membership {
    #[cfg(feature = "distributed")]
    _universe: Option<::mpi::environment::Universe>,
}

/// Joins the MPI job this process was launched into, if any; call once, first thing in
/// `main`, before any other thread starts. Sets the CPU threads per rank (cores shared among
/// the ranks of this machine, unless `RAYON_NUM_THREADS` says otherwise).
pub fn init() -> Result<Membership, Error> {
    let Some(launched) = launched_size() else {
        return Ok(Membership {
            #[cfg(feature = "distributed")]
            _universe: None,
        });
    };
    #[cfg(not(feature = "distributed"))]
    {
        if launched > 1 {
            return Err(Error::Usage(format!(
                "this process is one of {launched} started by an MPI launcher, but this stoke was \
                 built without MPI; build it with `cargo build --release --features distributed` \
                 (needs Open MPI: apt install openmpi-bin libopenmpi-dev libclang-dev)"
            )));
        }
        Ok(Membership {})
    }
    #[cfg(feature = "distributed")]
    {
        let _ = launched;
        let (universe, world) = comm::join()?;
        share_cores(world.local_size);
        let _ = WORLD.set(world);
        comm::abort_on_panic();
        Ok(Membership {
            _universe: Some(universe),
        })
    }
}

/// The world size an MPI launcher announced in the environment, without initialising MPI:
/// Open MPI's `mpirun`, MPICH's Hydra and PMI (`srun --mpi=pmi2`), and Slurm's `srun` steps.
fn launched_size() -> Option<usize> {
    let read = |name: &str| std::env::var(name).ok()?.parse::<usize>().ok();
    read("OMPI_COMM_WORLD_SIZE")
        .or_else(|| read("PMI_SIZE"))
        .or_else(|| {
            // Inside an `srun` step (not merely an sbatch script, which sets SLURM_PROCID too).
            std::env::var_os("SLURM_STEP_ID")?;
            read("SLURM_STEP_NUM_TASKS")
        })
}

/// Gives each rank of this machine its share of the cores for its compute threads.
#[cfg_attr(not(feature = "distributed"), allow(dead_code))]
fn share_cores(local_ranks: usize) {
    if local_ranks <= 1 || std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    // Counts the cores this process may run on, so a launcher's binding is respected.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / local_ranks).max(1);
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
}

impl World {
    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// This rank's index among the ranks on its machine: the GPU it takes.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Ranks on this rank's machine.
    pub fn local_size(&self) -> usize {
        self.local_size
    }

    /// Whether this rank writes the run directory and shows progress (rank 0).
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    pub fn is_distributed(&self) -> bool {
        self.size > 1
    }

    /// `send` summed element-wise over all ranks into `sum` (the same on every rank).
    pub fn sum_f32(&self, send: &[f32], sum: &mut [f32]) {
        #[cfg(feature = "distributed")]
        if self.is_distributed() {
            return comm::sum_f32(send, sum);
        }
        sum.copy_from_slice(send);
    }

    /// `values` summed element-wise over all ranks, in place.
    pub fn sum_f64(&self, values: &mut [f64]) {
        #[cfg(feature = "distributed")]
        if self.is_distributed() {
            let send = values.to_vec();
            comm::sum_f64(&send, values);
        }
        #[cfg(not(feature = "distributed"))]
        let _ = values;
    }

    /// Returns once every rank has called it: after rank 0 writes a file the others read.
    pub fn wait_for_all(&self) {
        #[cfg(feature = "distributed")]
        if self.is_distributed() {
            comm::barrier();
        }
    }

    /// Every rank's `digest`, by rank.
    pub fn gather_digests(&self, digest: [u8; 32]) -> Vec<[u8; 32]> {
        #[cfg(feature = "distributed")]
        if self.is_distributed() {
            return comm::gather_digests(digest, self.size);
        }
        vec![digest]
    }

    /// Rank 0's `text` on every rank.
    pub fn broadcast_text(&self, text: String) -> String {
        #[cfg(feature = "distributed")]
        if self.is_distributed() {
            return comm::broadcast_text(text);
        }
        text
    }

    /// Checks that every rank holds the same `what` (`digest` is its SHA-256); the error,
    /// the same on every rank, names the ranks that differ from rank 0.
    pub fn check_agreement(&self, what: &str, digest: [u8; 32]) -> Result<(), Error> {
        let digests = self.gather_digests(digest);
        let differing: Vec<usize> = (1..digests.len())
            .filter(|&rank| digests[rank] != digests[0])
            .collect();
        if differing.is_empty() {
            return Ok(());
        }
        Err(Error::RanksDisagree {
            what: what.to_string(),
            ranks: differing,
            size: self.size,
        })
    }

    /// Ends every process of the job at once with `code`: what a rank does when it fails
    /// alone, since the others would otherwise wait for it in their next collective forever.
    pub fn abort(&self, code: u8) -> ! {
        #[cfg(feature = "distributed")]
        if self.is_distributed() {
            comm::abort(code);
        }
        std::process::exit(i32::from(code))
    }
}
