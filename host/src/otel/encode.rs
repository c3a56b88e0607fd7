//! One export: the cumulative snapshot as reported (cumulative, or delta against the previous
//! export), encoded as an OTLP `ExportMetricsServiceRequest` (protobuf) or as one JSON line
//! for the console exporter.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    self as pb, AggregationTemporality, HistogramDataPoint, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{Value, json};

use super::aggregate::{AttrValue, Attrs, Hist, Metric, Point};
use super::config::Temporality;

/// The instrumentation scope of every metric (the seed's).
pub const SCOPE: &str = "headroom";

/// Turns cumulative snapshots into what an export reports.
pub struct Reporter {
    temporality: Temporality,
    /// When counting started (cumulative points' start time), unix ns.
    start: u64,
    /// The previous export's time, unix ns (delta points' start time).
    last_time: u64,
    /// The previous export's cumulative points (delta only).
    last: HashMap<(String, Attrs), Point>,
}

/// What changed in a point since `before` (`None`: nothing).
fn delta(now: &Point, before: Option<&Point>) -> Option<Point> {
    match (now, before) {
        (Point::Gauge(v), _) => Some(Point::Gauge(*v)),
        (Point::Sum { value, int }, Some(Point::Sum { value: old, .. })) => {
            let d = value - old;
            (d != 0.0).then_some(Point::Sum {
                value: d,
                int: *int,
            })
        }
        (Point::Sum { value, .. }, None) if *value == 0.0 => None,
        (Point::Histogram(h), Some(Point::Histogram(old)))
            if h.bounds == old.bounds && h.counts.len() == old.counts.len() =>
        {
            let count = h.count.saturating_sub(old.count);
            (count > 0).then(|| {
                Point::Histogram(Hist {
                    bounds: h.bounds.clone(),
                    counts: h
                        .counts
                        .iter()
                        .zip(&old.counts)
                        .map(|(a, b)| a.saturating_sub(*b))
                        .collect(),
                    sum: h.sum - old.sum,
                    count,
                    // The extremes of the interval alone are not known.
                    min_max: None,
                })
            })
        }
        (Point::Histogram(h), None) if h.count == 0 => None,
        (Point::Histogram(h), _) => Some(Point::Histogram(Hist {
            min_max: None,
            ..h.clone()
        })),
        (p, _) => Some(p.clone()),
    }
}

/// A report: the metrics with the points to send and their time range.
pub struct Report {
    /// The metrics (only those with points).
    pub metrics: Vec<Metric>,
    /// Points' start time, unix ns.
    pub start: u64,
    /// Points' time, unix ns.
    pub time: u64,
    /// Cumulative or delta.
    pub temporality: Temporality,
}

impl Reporter {
    /// A reporter counting from `start` (unix ns).
    pub fn new(temporality: Temporality, start: u64) -> Self {
        Self {
            temporality,
            start,
            last_time: start,
            last: HashMap::new(),
        }
    }

    /// What to report of `metrics` (cumulative totals) at `now` (unix ns).
    pub fn report(&mut self, metrics: Vec<Metric>, now: u64) -> Report {
        let report = match self.temporality {
            Temporality::Cumulative => Report {
                metrics: metrics
                    .into_iter()
                    .filter(|m| !m.points.is_empty())
                    .collect(),
                start: self.start,
                time: now,
                temporality: self.temporality,
            },
            Temporality::Delta => {
                let mut out = Vec::new();
                let mut seen = HashMap::new();
                for metric in metrics {
                    let mut points = Vec::new();
                    for (attrs, point) in metric.points.iter() {
                        let key = (metric.name.clone(), attrs.clone());
                        if let Some(d) = delta(point, self.last.get(&key)) {
                            points.push((attrs.clone(), d));
                        }
                        seen.insert(key, point.clone());
                    }
                    if !points.is_empty() {
                        out.push(Metric { points, ..metric });
                    }
                }
                self.last = seen;
                Report {
                    metrics: out,
                    start: self.last_time,
                    time: now,
                    temporality: self.temporality,
                }
            }
        };
        self.last_time = now;
        report
    }
}

fn any(value: &AttrValue) -> AnyValue {
    AnyValue {
        value: Some(match value {
            AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
            AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        }),
    }
}

fn key_values(attrs: &Attrs) -> Vec<KeyValue> {
    attrs
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(any(v)),
            ..Default::default()
        })
        .collect()
}

fn number(value: f64, int: bool) -> number_data_point::Value {
    if int {
        number_data_point::Value::AsInt(value as i64)
    } else {
        number_data_point::Value::AsDouble(value)
    }
}

impl Report {
    fn otlp_temporality(&self) -> i32 {
        match self.temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative as i32,
            Temporality::Delta => AggregationTemporality::Delta as i32,
        }
    }

    /// The OTLP request, with the resource attributes given (in order; a later duplicate key
    /// overrides an earlier one, so each key is sent once).
    pub fn to_otlp(&self, resource: &[(String, String)]) -> ExportMetricsServiceRequest {
        let resource = Resource {
            attributes: resource
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(v.clone())),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let temporality = self.otlp_temporality();
        let metrics = self
            .metrics
            .iter()
            .filter_map(|m| {
                let data = match m.points.first().map(|(_, p)| p)? {
                    Point::Sum { .. } => Data::Sum(pb::Sum {
                        data_points: m
                            .points
                            .iter()
                            .filter_map(|(attrs, p)| match p {
                                Point::Sum { value, int } => Some(NumberDataPoint {
                                    attributes: key_values(attrs),
                                    start_time_unix_nano: self.start,
                                    time_unix_nano: self.time,
                                    value: Some(number(*value, *int)),
                                    ..Default::default()
                                }),
                                _ => None,
                            })
                            .collect(),
                        aggregation_temporality: temporality,
                        is_monotonic: true,
                    }),
                    Point::Gauge(_) => Data::Gauge(pb::Gauge {
                        data_points: m
                            .points
                            .iter()
                            .filter_map(|(attrs, p)| match p {
                                Point::Gauge(v) => Some(NumberDataPoint {
                                    attributes: key_values(attrs),
                                    time_unix_nano: self.time,
                                    value: Some(number_data_point::Value::AsInt(*v)),
                                    ..Default::default()
                                }),
                                _ => None,
                            })
                            .collect(),
                    }),
                    Point::Histogram(_) => Data::Histogram(pb::Histogram {
                        data_points: m
                            .points
                            .iter()
                            .filter_map(|(attrs, p)| match p {
                                Point::Histogram(h) => Some(HistogramDataPoint {
                                    attributes: key_values(attrs),
                                    start_time_unix_nano: self.start,
                                    time_unix_nano: self.time,
                                    count: h.count,
                                    sum: Some(h.sum),
                                    bucket_counts: h.counts.clone(),
                                    explicit_bounds: h.bounds.clone(),
                                    min: h.min_max.map(|(lo, _)| lo),
                                    max: h.min_max.map(|(_, hi)| hi),
                                    ..Default::default()
                                }),
                                _ => None,
                            })
                            .collect(),
                        aggregation_temporality: temporality,
                    }),
                };
                Some(pb::Metric {
                    name: m.name.clone(),
                    description: m.description.clone(),
                    unit: m.unit.clone(),
                    data: Some(data),
                    ..Default::default()
                })
            })
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE.into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    /// The console exporter's line: one JSON object per export.
    pub fn to_json(&self, resource: &[(String, String)]) -> Value {
        let attrs = |a: &Attrs| -> Value {
            a.iter()
                .map(|(k, v)| {
                    let v = match v {
                        AttrValue::Str(s) => json!(s),
                        AttrValue::Bool(b) => json!(b),
                    };
                    (k.clone(), v)
                })
                .collect::<serde_json::Map<String, Value>>()
                .into()
        };
        let metrics: Vec<Value> = self
            .metrics
            .iter()
            .map(|m| {
                let points: Vec<Value> = m
                    .points
                    .iter()
                    .map(|(a, p)| match p {
                        Point::Sum { value, .. } => json!({"attributes": attrs(a), "value": value}),
                        Point::Gauge(v) => json!({"attributes": attrs(a), "value": v}),
                        Point::Histogram(h) => json!({
                            "attributes": attrs(a), "count": h.count, "sum": h.sum,
                            "bucket_counts": h.counts, "explicit_bounds": h.bounds,
                        }),
                    })
                    .collect();
                let kind = match m.points.first().map(|(_, p)| p) {
                    Some(Point::Gauge(_)) => "gauge",
                    Some(Point::Histogram(_)) => "histogram",
                    _ => "sum",
                };
                json!({"name": m.name, "unit": m.unit, "type": kind, "data_points": points})
            })
            .collect();
        let resource: serde_json::Map<String, Value> = resource
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        json!({
            "resource": resource,
            "scope": {"name": SCOPE, "version": env!("CARGO_PKG_VERSION")},
            "temporality": self.temporality.as_str(),
            "start_time_unix_nano": self.start,
            "time_unix_nano": self.time,
            "metrics": metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn metric(name: &str, point: Point) -> Metric {
        Metric {
            name: name.into(),
            unit: "1".into(),
            description: String::new(),
            points: vec![(vec![("k".into(), AttrValue::Bool(true))], point)],
        }
    }

    fn sum(value: f64) -> Point {
        Point::Sum { value, int: true }
    }

    #[test]
    fn delta_reports_only_changes() {
        let mut r = Reporter::new(Temporality::Delta, 100);
        let first = r.report(vec![metric("a", sum(3.0)), metric("z", sum(0.0))], 200);
        assert_eq!(first.start, 100);
        assert_eq!(first.metrics.len(), 1);
        assert_eq!(first.metrics[0].points[0].1, sum(3.0));
        let second = r.report(vec![metric("a", sum(3.0))], 300);
        assert!(second.metrics.is_empty());
        let third = r.report(vec![metric("a", sum(10.0))], 400);
        assert_eq!(third.start, 300);
        assert_eq!(third.metrics[0].points[0].1, sum(7.0));

        let mut c = Reporter::new(Temporality::Cumulative, 100);
        let report = c.report(vec![metric("a", sum(3.0))], 200);
        let again = c.report(vec![metric("a", sum(3.0))], 300);
        assert_eq!(report.metrics[0].points[0].1, sum(3.0));
        assert_eq!(again.start, 100);
        assert_eq!(again.metrics.len(), 1);
    }

    #[test]
    fn encodes_and_decodes() {
        let mut r = Reporter::new(Temporality::Cumulative, 1);
        let hist = Hist {
            bounds: vec![1.0, 2.0],
            counts: vec![1, 0, 2],
            sum: 9.5,
            count: 3,
            min_max: Some((0.5, 5.0)),
        };
        let report = r.report(
            vec![
                metric("s", sum(4.0)),
                metric("g", Point::Gauge(-2)),
                metric("h", Point::Histogram(hist)),
            ],
            2,
        );
        let request = report.to_otlp(&[("service.name".into(), "x".into())]);
        let bytes = request.encode_to_vec();
        let back = ExportMetricsServiceRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, request);
        let metrics = &back.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 3);
        let Some(Data::Histogram(h)) = &metrics[2].data else {
            panic!()
        };
        assert_eq!(h.data_points[0].bucket_counts, vec![1, 0, 2]);
        assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(report.to_json(&[])["metrics"][1]["type"], "gauge");
    }
}
