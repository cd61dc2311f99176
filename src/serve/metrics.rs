//! What `/metrics` reports, in the Prometheus text format: requests by route and status,
//! their latency, the batch sizes the worker ran, the queue's depth and bound, and which
//! model version answers, and drift: each statistic's score on the last full window of
//! answers, its threshold and whether it crossed it (`drift.rs`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatisticLabels {
    pub statistic: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub batch_size: Histogram,
    pub inputs: Counter,
    pub queue_depth: Gauge,
    pub queue_capacity: Gauge,
    pub model_version: Family<VersionLabels, Gauge>,
    pub reloads: Family<OutcomeLabels, Counter>,
    pub drift_score: Family<StatisticLabels, FloatGauge>,
    pub drift_threshold: Family<StatisticLabels, FloatGauge>,
    pub drift_alert: Family<StatisticLabels, Gauge>,
    pub drift_alerts: Family<StatisticLabels, Counter>,
    pub drift_windows: Counter,
    pub drift_window_size: Gauge,
    pub drift_fill: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.1 ms to about 6.5 s.
    Histogram::new(exponential_buckets(1e-4, 2.0, 17))
}

impl Metrics {
    pub fn new(max_batch: usize, queue: usize) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency =
            Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let batch_buckets = (0..)
            .map(|power| 2f64.powi(power))
            .take_while(|&size| size < 2.0 * max_batch as f64);
        let batch_size = Histogram::new(batch_buckets);
        let inputs = Counter::default();
        let queue_depth = Gauge::default();
        let queue_capacity = Gauge::default();
        queue_capacity.set(queue as i64);
        let model_version = Family::<VersionLabels, Gauge>::default();
        let reloads = Family::<OutcomeLabels, Counter>::default();
        let drift_score = Family::<StatisticLabels, FloatGauge>::default();
        let drift_threshold = Family::<StatisticLabels, FloatGauge>::default();
        let drift_alert = Family::<StatisticLabels, Gauge>::default();
        let drift_alerts = Family::<StatisticLabels, Counter>::default();
        let drift_windows = Counter::default();
        let drift_window_size = Gauge::default();
        let drift_fill = Gauge::default();

        let mut registry = Registry::with_prefix("stoke");
        registry.register(
            "http_requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from the request's arrival to its answer, by route",
            latency.clone(),
        );
        registry.register(
            "batch_size",
            "Inputs in each batch the model ran",
            batch_size.clone(),
        );
        registry.register("inputs", "Inputs the model answered", inputs.clone());
        registry.register(
            "queue_depth",
            "Inputs admitted and not yet answered",
            queue_depth.clone(),
        );
        registry.register(
            "queue_capacity",
            "The most inputs admitted at once (--queue); beyond it requests get 503",
            queue_capacity.clone(),
        );
        registry.register(
            "model_version",
            "1 for the version being served (the first 12 hex digits of its weights' SHA-256)",
            model_version.clone(),
        );
        registry.register(
            "model_reloads",
            "Reload attempts, by outcome",
            reloads.clone(),
        );
        registry.register(
            "drift_score",
            "Each drift statistic on the last full window of answers against the artifact's holdout profile (PSI on classes, Kolmogorov-Smirnov on confidence and features)",
            drift_score.clone(),
        );
        registry.register(
            "drift_threshold",
            "The score above which a statistic alerts (calibrated by resampling the profile)",
            drift_threshold.clone(),
        );
        registry.register(
            "drift_alert",
            "1 when the statistic crossed its threshold on the last full window",
            drift_alert.clone(),
        );
        registry.register(
            "drift_alerts",
            "Windows on which the statistic crossed its threshold",
            drift_alerts.clone(),
        );
        registry.register(
            "drift_windows",
            "Full windows of answers scored for drift",
            drift_windows.clone(),
        );
        registry.register(
            "drift_window_size",
            "Answers per drift window (0: the artifact has no profile)",
            drift_window_size.clone(),
        );
        registry.register(
            "drift_window_fill",
            "Answers in the window being filled",
            drift_fill.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            batch_size,
            inputs,
            queue_depth,
            queue_capacity,
            model_version,
            reloads,
            drift_score,
            drift_threshold,
            drift_alert,
            drift_alerts,
            drift_windows,
            drift_window_size,
            drift_fill,
        }
    }

    /// A new model: its window size and thresholds (none without a profile), no scores yet.
    pub fn drift_reset(&self, profile: Option<(usize, Vec<(&str, f64)>)>) {
        self.drift_score.clear();
        self.drift_alert.clear();
        self.drift_threshold.clear();
        self.drift_fill.set(0);
        let (window, thresholds) = profile.unwrap_or_default();
        self.drift_window_size.set(window as i64);
        for (statistic, threshold) in thresholds {
            let labels = StatisticLabels {
                statistic: statistic.to_string(),
            };
            self.drift_threshold.get_or_create(&labels).set(threshold);
            self.drift_alert.get_or_create(&labels).set(0);
        }
    }

    /// A full window's (statistic, score, alert) triples.
    pub fn drift_window(&self, judged: Vec<(&str, f64, bool)>) {
        self.drift_windows.inc();
        for (statistic, score, alert) in judged {
            let labels = StatisticLabels {
                statistic: statistic.to_string(),
            };
            self.drift_score.get_or_create(&labels).set(score);
            self.drift_alert
                .get_or_create(&labels)
                .set(i64::from(alert));
            let alerts = self.drift_alerts.get_or_create(&labels);
            if alert {
                alerts.inc();
            }
        }
    }

    pub fn serving(&self, version: &str) {
        self.model_version.clear();
        self.model_version
            .get_or_create(&VersionLabels {
                version: version.to_string(),
            })
            .set(1);
    }

    pub fn answered(&self, route: &str, status: u16, seconds: f64) {
        let route = route.to_string();
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                status: status.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(seconds);
    }

    pub fn reload(&self, outcome: &str) {
        self.reloads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The registry in the text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
