//! The host's Prometheus registry: the filter's metrics, with labels decoded from their names,
//! next to the host's own (VM traps and reloads) and the process metrics.
//!
//! The filter carries labels in metric names as `name.label.value[.label.value…]`; Envoy turns
//! them into labels with `stats_tags`, and [`decode_name`] does the same here, so one scrape
//! looks the same from either host.

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily};
use prometheus::{Encoder, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

use crate::abi::shared::{HISTOGRAM_BUCKETS, Metrics};
use crate::abi::types::MetricType;

/// Splits `name.label.value…` into a Prometheus name and labels. A name that does not follow
/// the convention is exported whole, with its dots made underscores.
pub fn decode_name(raw: &str) -> (String, Vec<(String, String)>) {
    let mut parts = raw.split('.');
    let name = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !l.starts_with(|c: char| c.is_ascii_digit())
    };
    if rest.len().is_multiple_of(2) && rest.chunks(2).all(|kv| valid_label(kv[0])) {
        let labels = rest
            .chunks(2)
            .map(|kv| (kv[0].to_string(), kv[1].to_string()))
            .collect();
        (sanitize(name), labels)
    } else {
        (sanitize(raw), Vec::new())
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Exports the guest-defined metrics at scrape time.
struct GuestMetrics {
    metrics: Arc<Metrics>,
}

impl Collector for GuestMetrics {
    fn desc(&self) -> Vec<&Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families: BTreeMap<String, MetricFamily> = BTreeMap::new();
        for metric in self.metrics.snapshot() {
            let (name, labels) = decode_name(&metric.name);
            let family = families.entry(name.clone()).or_insert_with(|| {
                let mut f = MetricFamily::default();
                f.set_name(name.clone());
                f.set_help(format!("{name} (defined by the Headroom filter)"));
                f.set_field_type(match metric.kind {
                    MetricType::Counter => proto::MetricType::COUNTER,
                    MetricType::Gauge => proto::MetricType::GAUGE,
                    MetricType::Histogram => proto::MetricType::HISTOGRAM,
                });
                f
            });
            let mut m = proto::Metric::default();
            m.set_label(
                labels
                    .into_iter()
                    .map(|(k, v)| {
                        let mut pair = proto::LabelPair::default();
                        pair.set_name(k);
                        pair.set_value(v);
                        pair
                    })
                    .collect(),
            );
            let value = metric.value.load(std::sync::atomic::Ordering::Relaxed);
            match metric.kind {
                MetricType::Counter => {
                    let mut c = proto::Counter::default();
                    c.set_value(value as f64);
                    m.set_counter(c);
                }
                MetricType::Gauge => {
                    let mut g = proto::Gauge::default();
                    g.set_value(value as f64);
                    m.set_gauge(g);
                }
                MetricType::Histogram => {
                    let state = metric
                        .histogram
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    let mut h = proto::Histogram::default();
                    h.set_sample_count(state.count);
                    h.set_sample_sum(state.sum);
                    let mut cumulative = 0;
                    h.set_bucket(
                        HISTOGRAM_BUCKETS
                            .iter()
                            .zip(state.buckets.iter())
                            .map(|(le, n)| {
                                cumulative += n;
                                let mut b = proto::Bucket::default();
                                b.set_upper_bound(*le);
                                b.set_cumulative_count(cumulative);
                                b
                            })
                            .collect(),
                    );
                    m.set_histogram(h);
                }
            }
            family.mut_metric().push(m);
        }
        families.into_values().collect()
    }
}

/// The host's registry and its own counters.
pub struct HostMetrics {
    registry: Registry,
    /// Guest traps (each fails its request open and replaces the VM).
    pub vm_traps: IntCounter,
    /// VMs created to replace a trapped one.
    pub vm_reloads: IntCounter,
    /// Requests that could not reach their upstream.
    pub upstream_errors: IntCounter,
    /// Upstream timeouts by `phase` (`connect`, `first_byte`); each is also an upstream error.
    pub upstream_timeouts: IntCounterVec,
    /// Client connections cut off by a timeout, by `kind` (`header`, `body`, `idle`).
    pub client_timeouts: IntCounterVec,
    /// Client connections refused because the connection limit was reached.
    pub connections_rejected: IntCounter,
}

impl HostMetrics {
    /// A registry exporting `guest` metrics, the host's counters and process metrics.
    pub fn new(guest: Arc<Metrics>) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let vm_traps = counter(
            "headroom_host_vm_traps_total",
            "Guest traps in the host; each failed its request open and replaced the VM",
        )?;
        let vm_reloads = counter(
            "headroom_host_vm_reloads_total",
            "VMs created to replace a trapped one",
        )?;
        let upstream_errors = counter(
            "headroom_host_upstream_errors_total",
            "Requests that could not reach their upstream",
        )?;
        let counter_vec =
            |name: &str, help: &str, label: &str| -> prometheus::Result<IntCounterVec> {
                let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let upstream_timeouts = counter_vec(
            "headroom_host_upstream_timeouts_total",
            "Upstream requests that timed out, by phase (connect, first_byte); the client got 504",
            "phase",
        )?;
        let client_timeouts = counter_vec(
            "headroom_host_client_timeouts_total",
            "Client connections cut off by a timeout, by kind (header, body, idle)",
            "kind",
        )?;
        // Every label value is exported from the start (at 0), so a rate() has a baseline.
        for phase in ["connect", "first_byte"] {
            upstream_timeouts.with_label_values(&[phase]);
        }
        for kind in ["header", "body", "idle"] {
            client_timeouts.with_label_values(&[kind]);
        }
        let connections_rejected = counter(
            "headroom_host_connections_rejected_total",
            "Client connections refused with 503 because the connection limit was reached",
        )?;
        registry.register(Box::new(GuestMetrics { metrics: guest }))?;
        registry.register(crate::records::dropped_collector()?)?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            vm_traps,
            vm_reloads,
            upstream_errors,
            upstream_timeouts,
            client_timeouts,
            connections_rejected,
        })
    }

    /// Every family of the registry (the filter's with labels decoded, the host's, the
    /// process's), for other exporters (OTLP).
    pub fn gather(&self) -> Vec<MetricFamily> {
        self.registry.gather()
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_labels() {
        assert_eq!(
            decode_name("headroom_requests_by_provider.provider.openai"),
            (
                "headroom_requests_by_provider".into(),
                vec![("provider".into(), "openai".into())]
            )
        );
        assert_eq!(
            decode_name("a.x.1.y.two"),
            (
                "a".into(),
                vec![("x".into(), "1".into()), ("y".into(), "two".into())]
            )
        );
        assert_eq!(decode_name("plain_total"), ("plain_total".into(), vec![]));
        assert_eq!(decode_name("odd.count"), ("odd_count".into(), vec![]));
    }

    #[test]
    fn guest_metrics_render_with_labels() {
        let guest = Arc::new(Metrics::default());
        let id = guest.define(
            MetricType::Counter,
            "headroom_requests_by_provider.provider.anthropic",
        );
        guest.increment(id, 3);
        let h = guest.define(MetricType::Histogram, "headroom_latency_ms");
        guest.record(h, 7);
        let text = HostMetrics::new(guest).unwrap().render();
        assert!(
            text.contains("headroom_requests_by_provider{provider=\"anthropic\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("headroom_latency_ms_bucket{le=\"10\"} 1"),
            "{text}"
        );
        assert!(text.contains("headroom_latency_ms_count 1"), "{text}");
        assert!(text.contains("headroom_host_vm_traps_total 0"), "{text}");
    }
}
