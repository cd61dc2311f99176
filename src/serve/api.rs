//! The HTTP routes: reading each request (JSON or a multipart upload) into the model's
//! inputs, with a `400`/`413` naming the field and input index when it cannot; admitting it
//! into the bounded queue; waiting for its answer until the deadline; and the operational
//! routes (`/healthz`, `/readyz`, `/metrics`, `/v1/model`, `/admin/reload`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, MatchedPath, Multipart, Request, State,
};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tower_http::catch_panic::CatchPanicLayer;

use super::batcher::{Answer, Inputs, Job, Message};
use super::{ApiError, Served, Shared};
use crate::data::{DataSpec, ImageShape, Resize, decode_image};
use crate::export::{GenerateOptions, Prediction, artifact};

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/predict", post(predict))
        .route("/v1/generate", post(generate))
        .route("/v1/model", get(model))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(reload_route))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(shared.options.max_body))
        .layer(middleware::from_fn_with_state(shared.clone(), observe))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server failed on this request",
            )
            .into_response()
        }))
        .with_state(shared)
}

/// Counts and times every request, and logs it with `--log`.
async fn observe(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_string();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    shared.metrics.answered(&route, status, seconds);
    if shared.options.log {
        eprintln!("{peer} {method} {path} {status} {:.2} ms", seconds * 1e3);
    }
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictBody {
    images: Option<Vec<String>>,
    texts: Option<Vec<String>>,
    top_k: Option<usize>,
    #[serde(default)]
    logits: bool,
}

/// A predict request read and decoded.
struct Parsed {
    inputs: Inputs,
    top_k: Option<usize>,
    logits: bool,
}

async fn predict(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    // Admitted before the body is read, so bodies in memory are bounded by the queue too.
    let mut permit = admit(&shared, 1)?;
    let served = shared.served();
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("multipart/form-data"));
    let parsed = if multipart {
        read_multipart(&shared, &served, request).await?
    } else {
        let body = read_json::<PredictBody>(request).await?;
        read_predict_body(&shared, &served, body).await?
    };
    if parsed.inputs.len() > 1 {
        permit.merge(admit(&shared, parsed.inputs.len() - 1)?);
    }
    let answer = enqueue(
        &shared,
        parsed.inputs,
        parsed.top_k.unwrap_or(3),
        parsed.logits,
        arrived,
    )
    .await;
    drop(permit);
    match answer? {
        Answer::Predictions {
            predictions,
            version,
        } => Ok(Json(Predictions {
            model_version: version,
            predictions,
        })
        .into_response()),
        Answer::Generated { .. } => unreachable!("a predict request gets predictions"),
    }
}

/// Serialised as is, not through `serde_json::Value`, which would widen the `f32` logits
/// to `f64` and print them with other digits than `stoke predict`.
#[derive(Serialize)]
struct Predictions {
    model_version: String,
    predictions: Vec<Prediction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateBody {
    prompt: String,
    #[serde(default = "default_tokens")]
    tokens: usize,
    #[serde(default = "default_temperature")]
    temperature: f64,
    top_k: Option<usize>,
    #[serde(default)]
    seed: u64,
}

fn default_tokens() -> usize {
    100
}

fn default_temperature() -> f64 {
    0.8
}

async fn generate(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let permit = admit(&shared, 1)?;
    let served = shared.served();
    if !matches!(served.manifest.input, DataSpec::LanguageModel { .. }) {
        return Err(ApiError::bad_request(format!(
            "this model is a classifier ({}): POST its inputs to /v1/predict",
            served.manifest.model.kind()
        )));
    }
    let body = read_json::<GenerateBody>(request).await?;
    if body.tokens > shared.options.max_tokens {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "tokens: {} is more than the {} one request may ask for (--max-tokens)",
                body.tokens, shared.options.max_tokens
            ),
        ));
    }
    if !(body.temperature >= 0.0 && body.temperature.is_finite()) {
        return Err(ApiError::bad_request(format!(
            "temperature: {} is not a number of 0 or more",
            body.temperature
        )));
    }
    let options = GenerateOptions {
        prompt: body.prompt,
        tokens: body.tokens,
        temperature: body.temperature,
        top_k: body.top_k,
        seed: body.seed,
    };
    let answer = enqueue(&shared, Inputs::Prompt(options), 0, false, arrived).await;
    drop(permit);
    match answer? {
        Answer::Generated { text, version } => {
            Ok(Json(json!({"model_version": version, "text": text})).into_response())
        }
        Answer::Predictions { .. } => unreachable!("a generate request gets text"),
    }
}

/// `n` more inputs into the queue, or 503 at once when they do not fit.
fn admit(shared: &Shared, n: usize) -> Result<OwnedSemaphorePermit, ApiError> {
    let permits = u32::try_from(n).unwrap_or(u32::MAX);
    shared
        .admission
        .clone()
        .try_acquire_many_owned(permits)
        .map_err(|_| {
            ApiError::unavailable(format!(
                "the queue is full ({} inputs waiting at most); try again shortly",
                shared.options.queue
            ))
        })
}

/// Hands `inputs` to the model's worker and waits for the answer until the deadline.
async fn enqueue(
    shared: &Shared,
    inputs: Inputs,
    top_k: usize,
    logits: bool,
    arrived: Instant,
) -> Result<Answer, ApiError> {
    let deadline = arrived + shared.options.deadline;
    let (reply, answer) = oneshot::channel();
    let job = Job {
        inputs,
        top_k,
        logits,
        arrived,
        deadline,
        reply,
    };
    shared
        .jobs
        .send(Message::Work(job))
        .map_err(|_| ApiError::unavailable("the server is stopping"))?;
    match tokio::time::timeout_at(deadline.into(), answer).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the model's worker stopped before answering",
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no answer within the request deadline of {} ms (--deadline-ms)",
                shared.options.deadline.as_millis()
            ),
        )),
    }
}

/// The body as JSON of type `T`; a 400 names the field that is wrong, a 413 says the body
/// is too large.
async fn read_json<T: DeserializeOwned>(request: Request) -> Result<T, ApiError> {
    let bytes = Bytes::from_request(request, &())
        .await
        .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("the body is not valid JSON: {inner}"))
        } else if path == "." {
            ApiError::bad_request(format!("the body is not the JSON expected: {inner}"))
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })
}

/// Checks a JSON predict request against the model and decodes its images.
async fn read_predict_body(
    shared: &Shared,
    served: &Served,
    body: PredictBody,
) -> Result<Parsed, ApiError> {
    let PredictBody {
        images,
        texts,
        top_k,
        logits,
    } = body;
    let inputs =
        match (&served.manifest.input, images, texts) {
            (DataSpec::ImageClassification { input, resize, .. }, Some(images), None) => {
                count("images", images.len(), shared.options.max_inputs)?;
                let (shape, resize) = (*input, *resize);
                let mut names = Vec::with_capacity(images.len());
                let mut files = Vec::with_capacity(images.len());
                for (index, encoded) in images.iter().enumerate() {
                    let field = format!("images[{index}]");
                    files.push(base64_payload(encoded).map_err(|err| {
                        ApiError::bad_request(format!("{field}: not base64: {err}"))
                    })?);
                    names.push(field);
                }
                Inputs::Images {
                    shape,
                    names,
                    pixels: decode_images(files, shape, resize).await?,
                }
            }
            (DataSpec::TextClassification { .. }, None, Some(texts)) => {
                count("texts", texts.len(), shared.options.max_inputs)?;
                Inputs::Texts(texts)
            }
            (spec, _, _) => return Err(wrong_inputs(spec)),
        };
    Ok(Parsed {
        inputs,
        top_k,
        logits,
    })
}

/// A multipart upload: image files in fields named `images` (or `image`), and optionally
/// `top_k` and `logits`.
async fn read_multipart(
    shared: &Shared,
    served: &Served,
    request: Request,
) -> Result<Parsed, ApiError> {
    let DataSpec::ImageClassification {
        input: shape,
        resize,
        ..
    } = served.manifest.input
    else {
        return Err(wrong_inputs(&served.manifest.input));
    };
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
    let (mut names, mut files) = (Vec::new(), Vec::new());
    let (mut top_k, mut logits) = (None, false);
    let failed = |err: axum::extract::multipart::MultipartError| {
        ApiError::new(err.status(), err.body_text())
    };
    while let Some(field) = form.next_field().await.map_err(failed)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "images" | "image" => {
                let index = files.len();
                names.push(
                    field
                        .file_name()
                        .map_or_else(|| format!("images[{index}]"), str::to_string),
                );
                files.push(field.bytes().await.map_err(failed)?);
                count("images", files.len(), shared.options.max_inputs)?;
            }
            "top_k" => {
                let text = field.text().await.map_err(failed)?;
                top_k = Some(text.trim().parse().map_err(|_| {
                    ApiError::bad_request(format!("top_k: \"{text}\" is not a whole number"))
                })?);
            }
            "logits" => {
                let text = field.text().await.map_err(failed)?;
                logits = match text.trim() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "logits: \"{other}\" is not true or false"
                        )));
                    }
                };
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form field \"{other}\": expected images, top_k or logits"
                )));
            }
        }
    }
    count("images", files.len(), shared.options.max_inputs)?;
    let pixels = decode_images(files, shape, resize).await?;
    Ok(Parsed {
        inputs: Inputs::Images {
            shape,
            names,
            pixels,
        },
        top_k,
        logits,
    })
}

/// Decodes uploaded images as `stoke predict` reads files, off the runtime's threads; the
/// first that is not an image is named by its index.
async fn decode_images(
    files: Vec<impl AsRef<[u8]> + Send + 'static>,
    shape: ImageShape,
    resize: Option<Resize>,
) -> Result<Vec<Vec<u8>>, ApiError> {
    tokio::task::spawn_blocking(move || {
        files
            .iter()
            .enumerate()
            .map(|(index, bytes)| {
                decode_image(bytes.as_ref(), shape, resize.as_ref()).map_err(|err| {
                    ApiError::bad_request(format!("images[{index}]: not an image: {err}"))
                })
            })
            .collect()
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "decoding the images failed",
        )
    })?
}

/// The bytes of a base64 string, or of a `data:...;base64,` URL.
fn base64_payload(encoded: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let payload = match encoded.split_once(";base64,") {
        Some((scheme, payload)) if scheme.starts_with("data:") => payload,
        _ => encoded,
    };
    base64::engine::general_purpose::STANDARD.decode(payload.trim())
}

fn count(field: &str, inputs: usize, max: usize) -> Result<(), ApiError> {
    if inputs == 0 {
        return Err(ApiError::bad_request(format!(
            "{field}: empty; give at least one input"
        )));
    }
    if inputs > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{field}: more than the {max} inputs one request may carry (--max-inputs)"),
        ));
    }
    Ok(())
}

fn wrong_inputs(spec: &DataSpec) -> ApiError {
    ApiError::bad_request(match spec {
        DataSpec::ImageClassification { .. } => {
            "this model classifies images: send {\"images\": [base64, ...]} or a multipart/form-data upload of \"images\" files"
        }
        DataSpec::TextClassification { .. } => {
            "this model classifies texts: send {\"texts\": [\"...\", ...]}"
        }
        DataSpec::LanguageModel { .. } => {
            "this model is a language model: POST {\"prompt\": \"...\", \"tokens\": N} to /v1/generate"
        }
        DataSpec::Tabular { .. } => {
            "this model reads table rows, which stoke serve does not take yet: predict them with stoke predict --rows FILE.csv"
        }
        DataSpec::Custom { .. } => {
            "this model reads inputs of its own kind, which stoke serve cannot read"
        }
    })
}

/// What is served: the manifest's task, labels, input spec, metrics and lineage, and what
/// drift is judged against.
async fn model(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let served = shared.served();
    let manifest = &served.manifest;
    let input = serde_json::to_value(&manifest.input).unwrap_or_default();
    Json(json!({
        "version": served.version,
        "loaded_at": served.loaded_at.to_rfc3339(),
        "artifact": shared.options.artifact,
        "task": input["task"],
        "labels": manifest.input.classes(),
        "input": input,
        "model": manifest.model,
        "parameters": manifest.parameters,
        "metrics": manifest.metrics,
        "source": manifest.source,
        "lineage": manifest.lineage,
        "drift": served.profile.as_ref().map(|profile| json!({
            "window": profile.window,
            "reference": profile.source,
            "thresholds": profile.thresholds,
        })),
    }))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 while the model is loaded and the queue has room; 503 when full or stopping.
async fn readyz(State(shared): State<Arc<Shared>>) -> Result<Json<Value>, ApiError> {
    if shared.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::unavailable("stopping"));
    }
    if shared.admission.available_permits() == 0 {
        return Err(ApiError::unavailable("the queue is full"));
    }
    Ok(Json(
        json!({"status": "ready", "model_version": shared.served().version}),
    ))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let depth = shared.options.queue - shared.admission.available_permits();
    shared.metrics.queue_depth.set(depth as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {} {}; the routes are POST /v1/predict, POST /v1/generate, GET /v1/model, GET /healthz, GET /readyz, GET /metrics and POST /admin/reload",
            request.method(),
            request.uri().path()
        ),
    )
}

/// `POST /admin/reload`, from this machine only.
async fn reload_route(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Json<Value>, ApiError> {
    if !peer.ip().is_loopback() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "reload is accepted from this machine only (a loopback address)",
        ));
    }
    let (previous, served) = reload(&shared).await?;
    Ok(Json(json!({
        "reloaded": true,
        "previous_version": previous,
        "model_version": served.version,
    })))
}

/// Reloads on every SIGHUP, saying on stderr what happened.
pub async fn reload_on_hangup(shared: Arc<Shared>, mut hangup: tokio::signal::unix::Signal) {
    while hangup.recv().await.is_some() {
        match reload(&shared).await {
            Ok((previous, served)) => eprintln!(
                "reloaded {}: version {previous} -> {}",
                shared.options.artifact.display(),
                served.version
            ),
            Err(err) => eprintln!("{}", err.message),
        }
    }
}

/// Verifies and loads the artifact on disk beside the one serving, then has the worker swap
/// it in between batches. On any failure the old model keeps serving and the error says why.
async fn reload(shared: &Arc<Shared>) -> Result<(String, Arc<Served>), ApiError> {
    let _one_at_a_time = shared.reloading.lock().await;
    let previous = shared.served().version.clone();
    let (path, backend) = (shared.options.artifact.clone(), shared.options.backend);
    let window = shared.options.drift_window;
    let opened = tokio::task::spawn_blocking(move || {
        let (manifest, loaded) = artifact::open_verified(&path, backend)?;
        let profile = super::drift::load_profile(&path, &manifest, window)?;
        Ok::<_, crate::Error>((manifest, profile, loaded))
    })
    .await;
    let (manifest, profile, loaded) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(err)) => {
            shared.metrics.reload("refused");
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("reload refused, still serving version {previous}: {err}"),
            ));
        }
        Err(_) => {
            shared.metrics.reload("failed");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reload failed while loading, still serving version {previous}"),
            ));
        }
    };
    let served = Arc::new(Served::new(manifest, profile));
    let (done, swapped) = oneshot::channel();
    let swap = Message::Swap {
        loaded: Box::new(loaded),
        served: served.clone(),
        done,
    };
    if shared.jobs.send(swap).is_err() || swapped.await.is_err() {
        return Err(ApiError::unavailable("the server is stopping"));
    }
    shared.metrics.reload("swapped");
    Ok((previous, served))
}
