//! Faults injected on purpose, for the tests of crash safety. `STOKE_FAULT` holds a
//! comma-separated list of:
//!
//! - `abort-in-checkpoint:<step>`: end the process at once (as a SIGKILL would, with no
//!   cleanup) in the middle of writing checkpoint `<step>`, after its model file;
//! - `fail-checkpoint-write:<step>`: fail the write of checkpoint `<step>` as a full disk would;
//! - `slow-steps:<ms>`: sleep after every training step, so a test can kill a run mid-way;
//! - `kill-rank:<rank>:<step>`: rank `<rank>` of a distributed run sends itself SIGKILL after
//!   step `<step>`, as a crashed machine would vanish.
//!
//! Without the variable nothing happens.

use std::sync::OnceLock;
use std::time::Duration;

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    AbortInCheckpoint(usize),
    FailCheckpointWrite(usize),
    SlowSteps(u64),
    KillRank { rank: usize, step: usize },
}

fn faults() -> &'static [Fault] {
    static FAULTS: OnceLock<Vec<Fault>> = OnceLock::new();
    FAULTS.get_or_init(|| {
        let spec = std::env::var("STOKE_FAULT").unwrap_or_default();
        spec.split(',')
            .filter_map(|fault| {
                let (kind, value) = fault.trim().split_once(':')?;
                if kind == "kill-rank" {
                    let (rank, step) = value.split_once(':')?;
                    let (rank, step) = (rank.parse().ok()?, step.parse().ok()?);
                    return Some(Fault::KillRank { rank, step });
                }
                let value: u64 = value.parse().ok()?;
                match kind {
                    "abort-in-checkpoint" => Some(Fault::AbortInCheckpoint(value as usize)),
                    "fail-checkpoint-write" => Some(Fault::FailCheckpointWrite(value as usize)),
                    "slow-steps" => Some(Fault::SlowSteps(value)),
                    _ => None,
                }
            })
            .collect()
    })
}

/// Called before each file of checkpoint `step` is written.
pub fn before_checkpoint_file(step: usize, file: &str) -> Result<(), Error> {
    for fault in faults() {
        match *fault {
            Fault::AbortInCheckpoint(at) if at == step && file != "model.bpk" => {
                eprintln!("STOKE_FAULT: dying while writing checkpoint step-{step}");
                std::process::exit(137);
            }
            Fault::FailCheckpointWrite(at) if at == step => {
                return Err(Error::io(
                    std::path::Path::new(file),
                    std::io::Error::new(
                        std::io::ErrorKind::StorageFull,
                        "No space left on device (injected by STOKE_FAULT)",
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Called after every training step.
pub fn after_step(step: usize, rank: usize) {
    for fault in faults() {
        match *fault {
            Fault::SlowSteps(ms) => std::thread::sleep(Duration::from_millis(ms)),
            Fault::KillRank {
                rank: victim,
                step: at,
            } if victim == rank && at == step => {
                eprintln!("STOKE_FAULT: rank {rank} kills itself after step {step}");
                #[cfg(unix)]
                // SAFETY: sends a signal to this very process.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                std::process::abort();
            }
            _ => {}
        }
    }
}
