//! Faults injected on purpose, for the tests of crash safety. `STOKE_FAULT` holds a
//! comma-separated list of:
//!
//! - `abort-in-checkpoint:<step>`: end the process at once (as a SIGKILL would, with no
//!   cleanup) in the middle of writing checkpoint `<step>`, after its model file;
//! - `fail-checkpoint-write:<step>`: fail the write of checkpoint `<step>` as a full disk would;
//! - `slow-steps:<ms>`: sleep after every training step, so a test can kill a run mid-way.
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
}

fn faults() -> &'static [Fault] {
    static FAULTS: OnceLock<Vec<Fault>> = OnceLock::new();
    FAULTS.get_or_init(|| {
        let spec = std::env::var("STOKE_FAULT").unwrap_or_default();
        spec.split(',')
            .filter_map(|fault| {
                let (kind, value) = fault.trim().split_once(':')?;
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
pub fn after_step() {
    for fault in faults() {
        if let Fault::SlowSteps(ms) = *fault {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }
}
