//! Cumulative state of the exported metrics: sums and histograms per attribute set, measured
//! from records ([`Aggregator`]) or read from the host's registry ([`from_families`]), and the
//! snapshot an export encodes ([`Metric`]).

use std::collections::BTreeMap;

use prometheus::proto::{MetricFamily, MetricType};

use super::mapping::{FROM_FILTER, Instrument, Kind};

/// An attribute value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttrValue {
    /// A string.
    Str(String),
    /// A boolean (the seed's `cached`).
    Bool(bool),
}

/// Attributes, in the order they were given.
pub type Attrs = Vec<(String, AttrValue)>;

/// A histogram's state.
#[derive(Clone, Debug, PartialEq)]
pub struct Hist {
    /// Explicit upper bounds (ascending).
    pub bounds: Vec<f64>,
    /// Samples per bucket, `bounds.len() + 1` of them (the last is above every bound).
    pub counts: Vec<u64>,
    /// Sum of the samples.
    pub sum: f64,
    /// Number of samples.
    pub count: u64,
    /// Smallest and largest sample, when known.
    pub min_max: Option<(f64, f64)>,
}

impl Hist {
    fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
            min_max: None,
        }
    }

    fn record(&mut self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
        self.min_max = Some(match self.min_max {
            None => (value, value),
            Some((lo, hi)) => (lo.min(value), hi.max(value)),
        });
    }
}

/// One data point's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Point {
    /// A monotonic sum; `int` when every value is a whole number (sent as `as_int`).
    Sum {
        /// The total.
        value: f64,
        /// Sent as an integer.
        int: bool,
    },
    /// A gauge (the filter's gauges are integers).
    Gauge(i64),
    /// A histogram.
    Histogram(Hist),
}

/// One exported metric and its points.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// The name.
    pub name: String,
    /// The unit (empty for the filter's metrics, which carry no unit).
    pub unit: String,
    /// The description.
    pub description: String,
    /// Points by attribute set.
    pub points: Vec<(Attrs, Point)>,
}

/// The record-measured instruments' cumulative state. Owned by the exporter's thread.
#[derive(Default)]
pub struct Aggregator {
    series: BTreeMap<&'static str, (Instrument, BTreeMap<Attrs, Point>)>,
}

impl Aggregator {
    /// Adds `value` to a counter, or records it in a histogram.
    pub fn add(&mut self, instrument: &Instrument, attrs: &Attrs, value: f64) {
        if !value.is_finite() {
            return;
        }
        let (_, points) = self
            .series
            .entry(instrument.name)
            .or_insert_with(|| (*instrument, BTreeMap::new()));
        let point = points
            .entry(attrs.clone())
            .or_insert_with(|| match instrument.kind {
                Kind::Counter => Point::Sum {
                    value: 0.0,
                    int: true,
                },
                Kind::Histogram(bounds) => Point::Histogram(Hist::new(bounds)),
            });
        match point {
            Point::Sum { value: total, int } => {
                *total += value;
                *int &= value.fract() == 0.0;
            }
            Point::Histogram(h) => h.record(value),
            Point::Gauge(_) => {}
        }
    }

    /// The instruments measured so far.
    pub fn metrics(&self) -> Vec<Metric> {
        self.series
            .values()
            .map(|(instrument, points)| Metric {
                name: instrument.name.to_owned(),
                unit: instrument.unit.to_owned(),
                description: instrument.description.to_owned(),
                points: points.iter().map(|(a, p)| (a.clone(), p.clone())).collect(),
            })
            .collect()
    }
}

fn attrs_of(m: &prometheus::proto::Metric, rename: &[(&str, &str)]) -> Attrs {
    m.get_label()
        .iter()
        .map(|l| {
            let name = rename
                .iter()
                .find(|(from, _)| *from == l.name())
                .map_or(l.name(), |(_, to)| *to);
            (name.to_owned(), AttrValue::Str(l.value().to_owned()))
        })
        .collect()
}

fn point_of(family: &MetricFamily, m: &prometheus::proto::Metric, scale: f64) -> Option<Point> {
    Some(match family.get_field_type() {
        MetricType::COUNTER => {
            let value = m.get_counter().get_value() * scale;
            Point::Sum {
                value,
                int: value.fract() == 0.0,
            }
        }
        MetricType::GAUGE => Point::Gauge(m.get_gauge().get_value() as i64),
        MetricType::HISTOGRAM => {
            let h = m.get_histogram();
            let buckets = h.get_bucket();
            let mut counts = Vec::with_capacity(buckets.len() + 1);
            let mut previous = 0;
            for b in buckets {
                counts.push(b.cumulative_count().saturating_sub(previous));
                previous = b.cumulative_count();
            }
            counts.push(h.get_sample_count().saturating_sub(previous));
            Point::Histogram(Hist {
                bounds: buckets.iter().map(|b| b.upper_bound() * scale).collect(),
                counts,
                sum: h.get_sample_sum() * scale,
                count: h.get_sample_count(),
                min_max: None,
            })
        }
        _ => return None,
    })
}

/// The metrics of the host's registry to export: every `headroom_*` family under its own
/// name (the filter's, as Envoy's stats sink sends them, and the host's `headroom_host_*`),
/// then the seed's instruments of [`FROM_FILTER`]. Process metrics are left out.
pub fn from_families(families: &[MetricFamily]) -> Vec<Metric> {
    let mut out = Vec::new();
    for family in families
        .iter()
        .filter(|f| f.name().starts_with("headroom_"))
    {
        let points = family
            .get_metric()
            .iter()
            .filter_map(|m| Some((attrs_of(m, &[]), point_of(family, m, 1.0)?)))
            .collect();
        out.push(Metric {
            name: family.name().to_owned(),
            unit: String::new(),
            description: family.help().to_owned(),
            points,
        });
    }
    for mapping in FROM_FILTER {
        let Some(family) = families.iter().find(|f| f.name() == mapping.family) else {
            continue;
        };
        let points = family
            .get_metric()
            .iter()
            .filter_map(|m| {
                Some((
                    attrs_of(m, mapping.rename),
                    point_of(family, m, mapping.scale)?,
                ))
            })
            .collect();
        out.push(Metric {
            name: mapping.instrument.name.to_owned(),
            unit: mapping.instrument.unit.to_owned(),
            description: mapping.instrument.description.to_owned(),
            points,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otel::mapping;

    #[test]
    fn histograms_bucket_by_upper_bound() {
        let mut agg = Aggregator::default();
        let attrs = vec![("provider".to_owned(), AttrValue::Str("openai".into()))];
        for v in [0.0004, 0.0005, 0.2, 1000.0] {
            agg.add(&mapping::REQUEST_DURATION, &attrs, v);
        }
        agg.add(&mapping::TOKENS_INPUT, &attrs, 12.0);
        agg.add(&mapping::COST, &attrs, 0.25);
        agg.add(&mapping::COST, &attrs, 1.0);
        let metrics = agg.metrics();
        let duration = metrics
            .iter()
            .find(|m| m.name == "headroom.proxy.request.duration")
            .unwrap();
        let Point::Histogram(h) = &duration.points[0].1 else {
            panic!()
        };
        assert_eq!(h.count, 4);
        assert_eq!(h.counts[0], 2); // ≤ 0.0005
        assert_eq!(h.counts[8], 1); // 0.2 ≤ 0.25
        assert_eq!(*h.counts.last().unwrap(), 1);
        assert_eq!(h.min_max, Some((0.0004, 1000.0)));
        let cost = metrics
            .iter()
            .find(|m| m.name == "headroom.proxy.cost")
            .unwrap();
        assert_eq!(
            cost.points[0].1,
            Point::Sum {
                value: 1.25,
                int: false
            }
        );
    }

    #[test]
    fn registry_families_keep_their_names_and_feed_the_seeds() {
        let guest = std::sync::Arc::new(crate::abi::shared::Metrics::default());
        let id = guest.define(
            crate::abi::types::MetricType::Counter,
            "headroom_cache_write_ttl_tokens_total.provider.anthropic.ttl.5m",
        );
        guest.increment(id, 10);
        let h = guest.define(
            crate::abi::types::MetricType::Histogram,
            "headroom_transform_timing_ms.transform.json_select",
        );
        guest.record(h, 7);
        let families = crate::metrics::HostMetrics::new(guest).unwrap().gather();
        let metrics = from_families(&families);
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert!(names.contains(&"headroom_cache_write_ttl_tokens_total"));
        assert!(names.contains(&"headroom_host_vm_traps_total"));
        assert!(!names.iter().any(|n| n.starts_with("process_")));
        let ttl = metrics
            .iter()
            .find(|m| m.name == "headroom.proxy.cache.write_ttl_tokens")
            .unwrap();
        assert_eq!(
            ttl.points[0].0,
            vec![
                ("provider".to_owned(), AttrValue::Str("anthropic".into())),
                ("ttl".to_owned(), AttrValue::Str("5m".into()))
            ]
        );
        assert_eq!(
            ttl.points[0].1,
            Point::Sum {
                value: 10.0,
                int: true
            }
        );
        let stage = metrics
            .iter()
            .find(|m| m.name == "headroom.compression.stage.duration")
            .unwrap();
        assert_eq!(stage.points[0].0[0].0, "stage");
        let Point::Histogram(hist) = &stage.points[0].1 else {
            panic!()
        };
        assert_eq!(hist.count, 1);
        assert!((hist.sum - 0.007).abs() < 1e-12);
        assert_eq!(hist.counts[3], 1); // 7 ms ≤ 10 ms
    }
}
