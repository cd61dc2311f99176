//! `stoke serve`'s flags, turned into [`ServeOptions`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::Error;
use crate::serve::ServeOptions;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// An artifact directory written by `stoke export`.
    pub artifact: PathBuf,
    /// Where to listen. Only this machine can connect to the default; another address is
    /// your explicit choice to expose the model.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// auto, wgpu, flex or ndarray (default: auto).
    #[arg(long)]
    pub backend: Option<String>,
    /// The most inputs the model runs at once.
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    /// How long a batch may wait to fill after its oldest request arrived.
    #[arg(long, default_value_t = 5)]
    pub max_wait_ms: u64,
    /// The most inputs admitted and not yet answered; beyond it requests get 503 at once.
    #[arg(long, default_value_t = 1024)]
    pub queue: usize,
    /// The most inputs one request may carry (413 beyond) [default: 256, or --queue if
    /// smaller].
    #[arg(long)]
    pub max_inputs: Option<usize>,
    /// The largest request body in KiB (413 beyond).
    #[arg(long, default_value_t = 8192)]
    pub max_body_kb: usize,
    /// The most tokens one /v1/generate request may ask for (413 beyond).
    #[arg(long, default_value_t = 2048)]
    pub max_tokens: usize,
    /// A request not answered within this many milliseconds gets 504.
    #[arg(long, default_value_t = 10_000)]
    pub deadline_ms: u64,
    /// After SIGTERM or Ctrl-C, how long the requests in flight have to finish.
    #[arg(long, default_value_t = 30)]
    pub grace_s: u64,
    /// Log one line per request on stderr.
    #[arg(long)]
    pub log: bool,
    /// Answers per drift window [default: the window the artifact's profile was calibrated
    /// for, 200]; thresholds are recalibrated for another.
    #[arg(long)]
    pub drift_window: Option<usize>,
}

pub fn serve(args: ServeArgs) -> Result<(), Error> {
    let backend = args
        .backend
        .as_deref()
        .map(super::parse_backend)
        .transpose()?;
    crate::serve::serve(ServeOptions {
        artifact: args.artifact,
        addr: args.addr,
        backend,
        max_batch: args.max_batch,
        max_wait: Duration::from_millis(args.max_wait_ms),
        queue: args.queue,
        max_inputs: args.max_inputs.unwrap_or(args.queue.min(256)),
        max_body: args.max_body_kb.saturating_mul(1024),
        max_tokens: args.max_tokens,
        deadline: Duration::from_millis(args.deadline_ms),
        grace: Duration::from_secs(args.grace_s),
        log: args.log,
        drift_window: args.drift_window,
    })
}
