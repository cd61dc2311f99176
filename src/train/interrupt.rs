//! Ctrl-C (and SIGTERM, as schedulers send before pre-empting a job, and SIGUSR1, which
//! `mpirun` passes on to every rank at once): the first one asks the loop to finish its step,
//! save a checkpoint and stop; a second one exits at once, which still leaves the last
//! complete checkpoint intact (checkpoints are written atomically).

use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Installs the handler once per process. Failing to install it costs only the graceful stop.
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
                eprintln!(
                    "\ninterrupt: finishing this step and saving a checkpoint (interrupt again to exit now)"
                );
            } else {
                eprintln!("\ninterrupt: exiting now; the last complete checkpoint is intact");
                std::process::exit(130);
            }
        });
        if let Err(err) = installed {
            eprintln!("warning: cannot handle Ctrl-C gracefully: {err}");
        }
        on_sigusr1();
    });
}

/// SIGUSR1 counts as a first interrupt (the handler only bumps the counter, which is
/// async-signal-safe; the loop says what it does when it sees it).
fn on_sigusr1() {
    #[cfg(unix)]
    {
        extern "C" fn handler(_: libc::c_int) {
            SIGNALS.fetch_max(1, Ordering::SeqCst);
        }
        // SAFETY: installs a handler that touches only an atomic.
        unsafe { libc::signal(libc::SIGUSR1, handler as *const () as libc::sighandler_t) };
    }
}

/// Whether the user asked the run to stop.
pub fn requested() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}
