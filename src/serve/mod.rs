//! `stoke serve`: an exported artifact behind an HTTP/1.1 JSON API (axum on tokio).
//!
//! This module owns the service around the model: admission (a bounded queue counted in
//! inputs; a request that does not fit gets `503` with `Retry-After` at once, so memory does
//! not grow with offered load), the batching worker (`batcher.rs`, one thread that owns the
//! model), request parsing and its errors (`api.rs`), `/metrics` (`metrics.rs`), drift
//! windows scored against the artifact's holdout profile (`drift.rs`), reload
//! (SIGHUP or `POST /admin/reload`: the artifact on disk is verified and loaded beside the
//! serving one, then swapped in between batches) and graceful shutdown (SIGTERM or Ctrl-C:
//! stop accepting, answer what was admitted, exit). Inputs are read and scored by the same
//! code as `stoke predict` (`export::image_logits`, `export::text_logits`), so answers are
//! the same, bit for bit.

mod api;
mod batcher;
mod drift;
mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, mpsc};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

use crate::Error;
use crate::config::BackendChoice;
use crate::export::profile::Profile;
use crate::export::{ArtifactManifest, artifact};
use batcher::{Batcher, Message};
use metrics::Metrics;

/// How `stoke serve` runs; the CLI's flags.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub artifact: PathBuf,
    pub addr: SocketAddr,
    pub backend: Option<BackendChoice>,
    /// The most inputs the model runs at once.
    pub max_batch: usize,
    /// How long the worker waits for a batch to fill after its oldest request arrived.
    pub max_wait: Duration,
    /// The most inputs admitted and not yet answered.
    pub queue: usize,
    /// The most inputs one request may carry.
    pub max_inputs: usize,
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// The most tokens one /v1/generate request may ask for.
    pub max_tokens: usize,
    /// A request not answered within this gets 504.
    pub deadline: Duration,
    /// After SIGTERM, how long requests in flight have to finish.
    pub grace: Duration,
    /// One line per request on stderr.
    pub log: bool,
    /// Answers per drift window (default: the window the profile was calibrated for).
    pub drift_window: Option<usize>,
}

/// The model version being served, as handlers see it.
pub struct Served {
    pub manifest: ArtifactManifest,
    /// The holdout profile drift is watched against, calibrated for the served window.
    pub profile: Option<Arc<Profile>>,
    /// The first 12 hex digits of the weights' SHA-256.
    pub version: String,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
}

impl Served {
    fn new(manifest: ArtifactManifest, profile: Option<Arc<Profile>>) -> Self {
        let version = manifest
            .files
            .get(artifact::SAFETENSORS_FILE)
            .map(|digest| digest.sha256.chars().take(12).collect())
            .unwrap_or_default();
        Served {
            manifest,
            profile,
            version,
            loaded_at: chrono::Utc::now(),
        }
    }
}

/// A request's failure: its status and the message for the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 503: try again shortly (the answer carries `Retry-After`).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": self.message, "status": self.status.as_u16()})),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// What every handler shares.
pub struct Shared {
    pub options: ServeOptions,
    /// One permit per input the queue may hold.
    pub admission: Arc<Semaphore>,
    pub current: Arc<RwLock<Arc<Served>>>,
    pub jobs: mpsc::Sender<Message>,
    pub metrics: Arc<Metrics>,
    /// One reload at a time.
    pub reloading: tokio::sync::Mutex<()>,
    /// Set once a stop was asked for: /readyz answers 503 from then on.
    pub stopping: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn served(&self) -> Arc<Served> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Loads the artifact, then serves it until SIGTERM or Ctrl-C.
pub fn serve(options: ServeOptions) -> Result<(), Error> {
    check(&options)?;
    if !artifact::is_artifact(&options.artifact) {
        return Err(Error::Usage(format!(
            "{} is not a stoke artifact (it has no manifest.json); write one with `stoke export RUN --out DIR`",
            options.artifact.display()
        )));
    }
    let (manifest, loaded) = artifact::open_verified(&options.artifact, options.backend)?;
    let profile = drift::load_profile(&options.artifact, &manifest, options.drift_window)?;
    eprintln!("backend: {}", loaded.backend.reason);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stoke-serve")
        // Image decoding and reloads run here; more threads than cores would only hold
        // more memory.
        .max_blocking_threads(cores)
        .build()
        .map_err(|err| Error::Serve(format!("cannot start the server's runtime: {err}")))?;
    runtime.block_on(run(options, Served::new(manifest, profile), loaded))
}

fn check(options: &ServeOptions) -> Result<(), Error> {
    let positive = [
        ("--max-batch", options.max_batch),
        ("--queue", options.queue),
        ("--max-inputs", options.max_inputs),
        ("--max-body-kb", options.max_body),
        ("--max-tokens", options.max_tokens),
        ("--drift-window", options.drift_window.unwrap_or(1)),
    ];
    if let Some((flag, _)) = positive.iter().find(|(_, value)| *value == 0) {
        return Err(Error::Usage(format!("{flag} must be at least 1")));
    }
    if options.max_inputs > options.queue {
        return Err(Error::Usage(format!(
            "--max-inputs {} is more than --queue {}: such a request could never be admitted",
            options.max_inputs, options.queue
        )));
    }
    Ok(())
}

async fn run(
    options: ServeOptions,
    served: Served,
    loaded: crate::export::Loaded,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|err| Error::Usage(format!("cannot listen on {}: {err}", options.addr)))?;
    let addr = listener
        .local_addr()
        .map_err(|err| Error::Usage(format!("cannot listen on {}: {err}", options.addr)))?;

    let served = Arc::new(served);
    let metrics = Arc::new(Metrics::new(options.max_batch, options.queue));
    metrics.serving(&served.version);
    let drift = drift::Monitor::new(served.profile.clone(), &metrics);
    let current = Arc::new(RwLock::new(served.clone()));
    let (jobs, messages) = mpsc::channel();
    let batcher = Batcher {
        loaded,
        served: served.clone(),
        max_batch: options.max_batch,
        max_wait: options.max_wait,
        metrics: metrics.clone(),
        current: current.clone(),
        drift: std::cell::RefCell::new(drift),
    };
    let worker = std::thread::Builder::new()
        .name("stoke-model".into())
        .spawn(move || batcher.run(messages))
        .map_err(|err| Error::Serve(format!("cannot start the model's thread: {err}")))?;

    let shared = Arc::new(Shared {
        admission: Arc::new(Semaphore::new(options.queue)),
        options,
        current,
        jobs,
        metrics,
        reloading: tokio::sync::Mutex::new(()),
        stopping: false.into(),
    });
    // Both before the address is announced: until a handler is installed, SIGHUP or SIGTERM
    // would kill the process outright.
    let reloads = tokio::spawn(api::reload_on_hangup(shared.clone(), hangup_signal()?));
    let stop = stop_signal()?;

    if !addr.ip().is_loopback() {
        eprintln!(
            "note: {addr} is not a loopback address: anyone who can reach it can use the model"
        );
    }
    eprintln!(
        "serving {} ({}, version {}) on http://{addr}",
        shared.options.artifact.display(),
        served.manifest.model.kind(),
        served.version
    );

    let stop_asked = Arc::new(Notify::new());
    let shutdown = {
        let (shared, stop_asked) = (shared.clone(), stop_asked.clone());
        async move {
            stop.await;
            shared
                .stopping
                .store(true, std::sync::atomic::Ordering::SeqCst);
            eprintln!("stopping: no new connections; answering the requests in flight");
            stop_asked.notify_one();
        }
    };
    let app = api::router(shared.clone());
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown);
    let grace = shared.options.grace;
    let finished = tokio::select! {
        result = server => result.map_err(|err| Error::Serve(format!("the server failed: {err}"))).map(|()| true),
        () = async { stop_asked.notified().await; tokio::time::sleep(grace).await } => Ok(false),
    }?;
    reloads.abort();
    let _ = shared.jobs.send(Message::Stop);
    if !finished {
        eprintln!(
            "stopped after {} s with requests still in flight (--grace-s)",
            grace.as_secs_f64()
        );
        return Err(Error::Serve(
            "the requests in flight did not finish in time".into(),
        ));
    }
    let started = Instant::now();
    tokio::task::spawn_blocking(move || worker.join())
        .await
        .ok();
    eprintln!(
        "stopped: every admitted request was answered ({:.0} ms to drain the model)",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// SIGTERM or Ctrl-C, whichever comes first.
fn stop_signal() -> Result<impl Future<Output = ()>, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|err| Error::Serve(format!("cannot handle SIGTERM: {err}")))?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = terminate.recv() => {},
        }
    })
}

fn hangup_signal() -> Result<tokio::signal::unix::Signal, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup()).map_err(|err| Error::Serve(format!("cannot handle SIGHUP: {err}")))
}
