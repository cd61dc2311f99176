//! `stoke train … --nproc N`: this process becomes a launcher that runs `mpirun -np N` over
//! the same command without `--nproc`, on this machine, and passes Ctrl-C on as a graceful
//! stop (every rank finishes its step, rank 0 saves a checkpoint).
//!
//! `mpirun` answers a Ctrl-C by terminating the job a second later, too soon for a checkpoint;
//! it forwards SIGUSR1 to the ranks at once instead. So `mpirun` runs in a process group of
//! its own, out of the terminal's Ctrl-C, and the launcher turns the first Ctrl-C into SIGUSR1
//! (ranks treat it as an interrupt) and a second one into SIGTERM (ends the job now).

use std::ffi::OsString;
use std::process::Command;

use crate::Error;

/// Runs the rest of this command line on `nproc` ranks; returns the job's exit code.
pub fn launch(nproc: usize, args: Vec<OsString>) -> Result<u8, Error> {
    if !cfg!(feature = "distributed") {
        return Err(Error::Usage(
            "--nproc runs stoke on several processes through MPI, but this stoke was built \
             without it; build it with `cargo build --release --features distributed` (needs \
             Open MPI: apt install openmpi-bin libopenmpi-dev libclang-dev)"
                .into(),
        ));
    }
    if nproc == 0 {
        return Err(Error::Usage("--nproc must be at least 1".into()));
    }
    let exe = std::env::current_exe()
        .map_err(|err| Error::Usage(format!("cannot find the stoke binary to launch: {err}")))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut mpirun = Command::new("mpirun");
    mpirun.args(["-q", "-np", &nproc.to_string(), "--bind-to", "none"]);
    if nproc > cores {
        mpirun.arg("--oversubscribe");
    }
    mpirun.arg(exe).args(without_nproc(args));
    // Out of the terminal's process group, mpirun must not read it (SIGTTIN would stop it).
    mpirun.stdin(std::process::Stdio::null());
    // Open MPI refuses to run as root unless told twice; the user already chose to.
    if is_root_user() {
        mpirun.env("OMPI_ALLOW_RUN_AS_ROOT", "1");
        mpirun.env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    }
    run_outside_the_terminal_group(&mut mpirun)
}

/// `args` (this process's, program name first) without the program and `--nproc N`.
fn without_nproc(args: Vec<OsString>) -> Vec<OsString> {
    let mut kept = Vec::new();
    let mut args = args.into_iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--nproc" {
            args.next();
        } else if !arg.to_string_lossy().starts_with("--nproc=") {
            kept.push(arg);
        }
    }
    kept
}

fn is_root_user() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: getuid has no preconditions.
        unsafe { libc::getuid() == 0 }
    }
    #[cfg(not(unix))]
    false
}

#[cfg(unix)]
fn run_outside_the_terminal_group(mpirun: &mut Command) -> Result<u8, Error> {
    use std::os::unix::process::CommandExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    mpirun.process_group(0);
    let mut child = mpirun.spawn().map_err(|err| {
        Error::Usage(format!(
            "--nproc runs mpirun, which could not be started ({err}); install Open MPI \
             (apt install openmpi-bin) or start the ranks yourself: mpirun -np N stoke train …"
        ))
    })?;
    let pid = child.id() as libc::pid_t;
    let interrupts = Arc::new(AtomicUsize::new(0));
    let seen = interrupts.clone();
    let _ = ctrlc::set_handler(move || {
        let signal = if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            libc::SIGUSR1
        } else {
            libc::SIGTERM
        };
        // SAFETY: signals the child this process started and still waits for.
        unsafe { libc::kill(pid, signal) };
    });
    let status = child
        .wait()
        .map_err(|err| Error::Usage(format!("waiting for mpirun: {err}")))?;
    Ok(status.code().map_or(1, |code| code.clamp(0, 255) as u8))
}

#[cfg(not(unix))]
fn run_outside_the_terminal_group(mpirun: &mut Command) -> Result<u8, Error> {
    let status = mpirun
        .status()
        .map_err(|err| Error::Usage(format!("--nproc runs mpirun, which failed: {err}")))?;
    Ok(status.code().map_or(1, |code| code.clamp(0, 255) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranks_run_the_same_command_without_nproc() {
        let args = [
            "stoke",
            "train",
            "c.toml",
            "--nproc",
            "2",
            "--set",
            "a=1",
            "--nproc=3",
        ];
        let kept = without_nproc(args.iter().map(OsString::from).collect());
        assert_eq!(kept, ["train", "c.toml", "--set", "a=1"]);
    }
}
