//! The MPI calls, through rsmpi over the system's MPI library (Open MPI, MPICH). Only the
//! main thread calls MPI (`MPI_THREAD_FUNNELED`).

use ::mpi::Threading;
use ::mpi::collective::SystemOperation;
use ::mpi::environment::Universe;
use ::mpi::topology::SimpleCommunicator;
use ::mpi::traits::*;

use super::World;
use crate::Error;

/// Initialises MPI and reads this process's place in the job.
pub(super) fn join() -> Result<(Universe, World), Error> {
    let Some((universe, _)) = ::mpi::initialize_with_threading(Threading::Funneled) else {
        return Err(Error::Usage(
            "MPI was initialised twice in one process".into(),
        ));
    };
    let world = universe.world();
    let (rank, size) = (world.rank() as usize, world.size() as usize);
    // The ranks that share this machine's memory: for the GPU index and the thread count.
    let node = world.split_shared(world.rank());
    let place = World {
        rank,
        size,
        local_rank: node.rank() as usize,
        local_size: node.size() as usize,
    };
    Ok((universe, place))
}

fn communicator() -> SimpleCommunicator {
    SimpleCommunicator::world()
}

pub(super) fn sum_f32(send: &[f32], sum: &mut [f32]) {
    communicator().all_reduce_into(send, sum, SystemOperation::sum());
}

pub(super) fn sum_f64(send: &[f64], sum: &mut [f64]) {
    communicator().all_reduce_into(send, sum, SystemOperation::sum());
}

pub(super) fn gather_digests(digest: [u8; 32], size: usize) -> Vec<[u8; 32]> {
    let mut all = vec![0u8; 32 * size];
    communicator().all_gather_into(&digest[..], &mut all[..]);
    all.chunks_exact(32)
        .map(|chunk| chunk.try_into().expect("32 bytes"))
        .collect()
}

pub(super) fn broadcast_text(text: String) -> String {
    let world = communicator();
    let root = world.process_at_rank(0);
    let mut bytes = text.into_bytes();
    let mut len = bytes.len() as u64;
    root.broadcast_into(&mut len);
    bytes.resize(len as usize, 0);
    root.broadcast_into(&mut bytes[..]);
    String::from_utf8_lossy(&bytes).into_owned()
}

pub(super) fn barrier() {
    communicator().barrier();
}

pub(super) fn abort(code: u8) -> ! {
    communicator().abort(i32::from(code))
}

/// A panic in one rank must end the job: unwinding would reach `MPI_Finalize`, which waits
/// for ranks that are themselves waiting for this one, and the job would hang.
pub(super) fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        communicator().abort(101);
    }));
}
