//! Ctrl-C (and SIGTERM, as schedulers send before pre-empting a job): the first one asks the
//! loop to finish its step, save a checkpoint and stop; a second one exits at once, which
//! still leaves the last complete checkpoint intact (checkpoints are written atomically).

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
    });
}

/// Whether the user asked the run to stop.
pub fn requested() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}
