//! The one thread that runs the model. It gathers queued requests into batches of up to
//! `max_batch` inputs, waiting at most `max_wait` after the oldest arrived; splits a
//! request with more inputs across batches and answers it whole; drops requests whose
//! deadline passed or whose client left before they started; and swaps in a reloaded model
//! between batches, once every request begun on the old one is answered.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::sync::oneshot;

use super::drift::Monitor;
use super::metrics::Metrics;
use super::{ApiError, Served};
use crate::data::{DataSpec, ImageShape};
use crate::export::{self, GenerateOptions, Loaded, Prediction};

/// What one request asks of the model.
pub enum Inputs {
    /// Decoded images: channel-major bytes of `shape`, named for the answer.
    Images {
        shape: ImageShape,
        names: Vec<String>,
        pixels: Vec<Vec<u8>>,
    },
    Texts(Vec<String>),
    Prompt(GenerateOptions),
}

impl Inputs {
    pub fn len(&self) -> usize {
        match self {
            Inputs::Images { pixels, .. } => pixels.len(),
            Inputs::Texts(texts) => texts.len(),
            Inputs::Prompt(_) => 1,
        }
    }

    /// Whether `loaded` reads these inputs: after a reload, a request decoded for the
    /// previous model may not fit the new one.
    fn fit(&self, loaded: &Loaded) -> bool {
        match (self, &loaded.spec) {
            (Inputs::Images { shape, .. }, DataSpec::ImageClassification { input, .. }) => {
                shape == input
            }
            (Inputs::Texts(_), DataSpec::TextClassification { .. })
            | (Inputs::Prompt(_), DataSpec::LanguageModel { .. }) => true,
            _ => false,
        }
    }

    fn name(&self, index: usize) -> String {
        match self {
            Inputs::Images { names, .. } => names[index].clone(),
            Inputs::Texts(texts) => texts[index].clone(),
            Inputs::Prompt(options) => options.prompt.clone(),
        }
    }

    fn batches_with(&self, other: &Inputs) -> bool {
        match (self, other) {
            (Inputs::Images { shape: a, .. }, Inputs::Images { shape: b, .. }) => a == b,
            (Inputs::Texts(_), Inputs::Texts(_)) => true,
            _ => false,
        }
    }
}

/// A request waiting for the model.
pub struct Job {
    pub inputs: Inputs,
    pub top_k: usize,
    pub logits: bool,
    pub arrived: Instant,
    /// When its answer is no longer wanted (504).
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<Answer, ApiError>>,
}

/// What the model made of a request, and which version answered.
pub enum Answer {
    Predictions {
        predictions: Vec<Prediction>,
        version: String,
    },
    Generated {
        text: String,
        version: String,
    },
}

pub enum Message {
    Work(Job),
    /// Serve `loaded` once what was begun on the current model is answered, then say so.
    Swap {
        loaded: Box<Loaded>,
        served: Arc<Served>,
        done: oneshot::Sender<()>,
    },
    /// Answer what is queued, then end.
    Stop,
}

/// A job and the rows of logits computed for it so far.
struct Pending {
    job: Job,
    rows: Vec<Vec<f32>>,
}

pub struct Batcher {
    pub loaded: Loaded,
    pub served: Arc<Served>,
    pub max_batch: usize,
    pub max_wait: Duration,
    pub metrics: Arc<Metrics>,
    /// Handlers read the version being served here; written at each swap.
    pub current: Arc<std::sync::RwLock<Arc<Served>>>,
    /// The drift window of the model being served.
    pub drift: RefCell<Monitor>,
}

impl Batcher {
    /// Runs until a `Stop` arrives (or every sender is gone) and the queue is answered.
    pub fn run(mut self, messages: Receiver<Message>) {
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut swap = None;
        let mut open = true;
        loop {
            if pending.is_empty() {
                if let Some((loaded, served, done)) = swap.take() {
                    self.swap(loaded, served, done);
                }
                if !open {
                    return;
                }
                match messages.recv() {
                    Ok(message) => self.accept(message, &mut pending, &mut swap, &mut open),
                    Err(_) => return,
                }
            }
            // Gather until a batch is full or the oldest request has waited max_wait; a
            // pending swap or stop runs what is queued at once.
            while open && swap.is_none() && queued_inputs(&pending) < self.max_batch {
                let Some(oldest) = pending.front() else { break };
                let until = oldest.job.deadline.min(oldest.job.arrived + self.max_wait);
                let now = Instant::now();
                let message = if now >= until {
                    match messages.try_recv() {
                        Ok(message) => message,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                } else {
                    match messages.recv_timeout(until - now) {
                        Ok(message) => message,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                };
                self.accept(message, &mut pending, &mut swap, &mut open);
            }
            self.drop_unwanted(&mut pending);
            self.run_batch(&mut pending);
        }
    }

    fn accept(
        &self,
        message: Message,
        pending: &mut VecDeque<Pending>,
        swap: &mut Option<(Box<Loaded>, Arc<Served>, oneshot::Sender<()>)>,
        open: &mut bool,
    ) {
        match message {
            Message::Work(job) => pending.push_back(Pending {
                job,
                rows: Vec::new(),
            }),
            Message::Swap {
                loaded,
                served,
                done,
            } => *swap = Some((loaded, served, done)),
            Message::Stop => *open = false,
        }
    }

    fn swap(&mut self, loaded: Box<Loaded>, served: Arc<Served>, done: oneshot::Sender<()>) {
        self.loaded = *loaded;
        self.metrics.serving(&served.version);
        self.drift = RefCell::new(Monitor::new(served.profile.clone(), &self.metrics));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = served.clone();
        self.served = served;
        let _ = done.send(());
    }

    /// Answers 504 for requests not begun whose deadline passed, and forgets those whose
    /// client stopped waiting.
    fn drop_unwanted(&self, pending: &mut VecDeque<Pending>) {
        let now = Instant::now();
        let mut kept = VecDeque::with_capacity(pending.len());
        for p in pending.drain(..) {
            if !p.rows.is_empty() {
                kept.push_back(p);
            } else if p.job.reply.is_closed() {
                // The client left or its handler gave up: nothing to answer.
            } else if now >= p.job.deadline {
                fail(
                    p.job,
                    ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the request's deadline passed while it waited in the queue",
                    ),
                );
            } else {
                kept.push_back(p);
            }
        }
        *pending = kept;
    }

    /// Runs the front request if it is a prompt, or else one batch from the front requests
    /// that batch together, and answers every request it completes.
    fn run_batch(&self, pending: &mut VecDeque<Pending>) {
        let Some(front) = pending.front_mut() else {
            return;
        };
        if !front.job.inputs.fit(&self.loaded) {
            let done = pending.pop_front().expect("front exists");
            fail(
                done.job,
                ApiError::unavailable(
                    "the model was reloaded with other inputs while this request waited; send it again",
                ),
            );
            return;
        }
        if let Inputs::Prompt(options) = &front.job.inputs {
            let outcome =
                catch_unwind(AssertUnwindSafe(|| export::generate(&self.loaded, options)));
            let done = pending.pop_front().expect("front exists");
            let answer = match outcome {
                Ok(Ok(text)) => Ok(Answer::Generated {
                    text,
                    version: self.served.version.clone(),
                }),
                Ok(Err(err)) => Err(ApiError::new(StatusCode::BAD_REQUEST, err.to_string())),
                Err(panic) => Err(model_failed(panic)),
            };
            self.metrics.batch_size.observe(1.0);
            self.metrics.inputs.inc();
            let _ = done.job.reply.send(answer);
            return;
        }

        // Which inputs of which requests go in this batch.
        let mut parts: Vec<(usize, Range<usize>)> = Vec::new();
        let mut room = self.max_batch;
        for (index, p) in pending.iter().enumerate() {
            if room == 0
                || !p.job.inputs.batches_with(&pending[0].job.inputs)
                || !p.job.inputs.fit(&self.loaded)
            {
                break;
            }
            let start = p.rows.len();
            let take = (p.job.inputs.len() - start).min(room);
            parts.push((index, start..start + take));
            room -= take;
        }
        let size = self.max_batch - room;
        self.metrics.batch_size.observe(size as f64);
        self.metrics.inputs.inc_by(size as u64);

        let rows = self.batch_logits(pending, &parts);
        let mut failed = Vec::new();
        for ((index, _), outcome) in parts.iter().zip(rows) {
            match outcome {
                Ok((rows, features)) => {
                    self.drift
                        .borrow_mut()
                        .observe(&rows, features, &self.metrics);
                    pending[*index].rows.extend(rows);
                }
                Err(error) => failed.push((*index, error)),
            }
        }
        // Answer, front to back, every request that is complete or failed.
        for (index, error) in failed.into_iter().rev() {
            let p = pending.remove(index).expect("index in range");
            fail(p.job, error);
        }
        while pending
            .front()
            .is_some_and(|p| p.rows.len() == p.job.inputs.len())
        {
            let done = pending.pop_front().expect("front exists");
            self.answer(done);
        }
    }

    /// The logits (and drift features) for each part of a batch. One forward pass runs them
    /// all; if it fails, each request's part runs alone so that only the failing request
    /// fails.
    fn batch_logits(
        &self,
        pending: &VecDeque<Pending>,
        parts: &[(usize, Range<usize>)],
    ) -> Vec<Result<PartOutputs, ApiError>> {
        let parts: Vec<(&Inputs, Range<usize>)> = parts
            .iter()
            .map(|(index, range)| (&pending[*index].job.inputs, range.clone()))
            .collect();
        let together = catch_unwind(AssertUnwindSafe(|| forward(&self.loaded, &parts)));
        if let Ok(Ok(rows)) = together {
            return rows.into_iter().map(Ok).collect();
        }
        parts
            .iter()
            .map(|part| {
                match catch_unwind(AssertUnwindSafe(|| {
                    forward(&self.loaded, std::slice::from_ref(part))
                })) {
                    Ok(Ok(mut rows)) => Ok(rows.remove(0)),
                    Ok(Err(err)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, err)),
                    Err(panic) => Err(model_failed(panic)),
                }
            })
            .collect()
    }

    fn answer(&self, done: Pending) {
        let Pending { job, rows } = done;
        let predictions = rows
            .into_iter()
            .enumerate()
            .map(|(index, logits)| {
                let mut prediction =
                    Prediction::new(&self.loaded, job.inputs.name(index), logits, job.top_k);
                if !job.logits {
                    prediction.logits.clear();
                }
                prediction
            })
            .collect();
        let _ = job.reply.send(Ok(Answer::Predictions {
            predictions,
            version: self.served.version.clone(),
        }));
    }
}

/// One part's rows of logits and its inputs' drift features.
type PartOutputs = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// The inputs `parts` name (all images or all texts) in one forward pass, through the same
/// code as `stoke predict`, and the rows of logits (and features) split back per part.
fn forward(loaded: &Loaded, parts: &[(&Inputs, Range<usize>)]) -> Result<Vec<PartOutputs>, String> {
    let outputs = match parts[0].0 {
        Inputs::Images { .. } => {
            let images: Vec<&[u8]> = parts
                .iter()
                .flat_map(|(inputs, range)| match inputs {
                    Inputs::Images { pixels, .. } => pixels[range.clone()].iter(),
                    _ => unreachable!("a batch holds one kind of input"),
                })
                .map(Vec::as_slice)
                .collect();
            export::image_outputs(loaded, &images)
        }
        Inputs::Texts(_) => {
            let texts: Vec<&str> = parts
                .iter()
                .flat_map(|(inputs, range)| match inputs {
                    Inputs::Texts(texts) => texts[range.clone()].iter(),
                    _ => unreachable!("a batch holds one kind of input"),
                })
                .map(String::as_str)
                .collect();
            export::text_outputs(loaded, &texts)
        }
        Inputs::Prompt(_) => unreachable!("prompts are not batched"),
    }
    .map_err(|err| err.to_string())?;
    let (mut rows, mut features) = (outputs.logits.into_iter(), outputs.features.into_iter());
    Ok(parts
        .iter()
        .map(|(_, range)| {
            (
                rows.by_ref().take(range.len()).collect(),
                features.by_ref().take(range.len()).collect(),
            )
        })
        .collect())
}

fn queued_inputs(pending: &VecDeque<Pending>) -> usize {
    pending
        .iter()
        .map(|p| p.job.inputs.len() - p.rows.len())
        .sum()
}

fn fail(job: Job, error: ApiError) {
    let _ = job.reply.send(Err(error));
}

fn model_failed(panic: Box<dyn std::any::Any + Send>) -> ApiError {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into());
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the model failed on this request: {detail}"),
    )
}
