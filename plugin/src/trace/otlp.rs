//! The OTLP trace export request (`opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`)
//! as protobuf bytes, for OTLP/HTTP with `content-type: application/x-protobuf`.
//!
//! Written by hand because the filter is a wasm module: the generated OTLP types (prost plus
//! the whole `opentelemetry-proto` tree) would add a code generator's output and a runtime for
//! the dozen fields a pipeline span uses. The tests decode these bytes with the official
//! generated messages, so a wrong field number or wire type fails them.

use super::{AttrValue, Span};

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// `Span.SpanKind.SPAN_KIND_INTERNAL`.
const SPAN_KIND_INTERNAL: u64 = 1;
/// `Status.StatusCode.STATUS_CODE_ERROR`.
const STATUS_CODE_ERROR: u64 = 2;

/// A protobuf message being written.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            // Seven bits per byte, low first; the cast keeps the low seven bits.
            self.0.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn uint(&mut self, field: u32, value: u64) {
        self.key(field, VARINT);
        self.varint(value);
    }

    fn fixed64(&mut self, field: u32, value: u64) {
        self.key(field, FIXED64);
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn bytes(&mut self, field: u32, value: &[u8]) {
        self.key(field, LEN);
        self.varint(value.len() as u64);
        self.0.extend_from_slice(value);
    }

    fn message(&mut self, field: u32, value: Message) {
        self.bytes(field, &value.0);
    }
}

/// `KeyValue { key, value: AnyValue }`.
fn key_value(key: &str, value: &AttrValue) -> Message {
    let mut any = Message::default();
    match value {
        AttrValue::Str(s) => any.bytes(1, s.as_bytes()),
        AttrValue::Int(i) => {
            // int64 is a varint of the two's-complement bits.
            any.uint(3, *i as u64);
        }
        AttrValue::Float(f) => any.fixed64(4, f.to_bits()),
    }
    let mut kv = Message::default();
    kv.bytes(1, key.as_bytes());
    kv.message(2, any);
    kv
}

fn span(span: &Span) -> Message {
    let mut m = Message::default();
    m.bytes(1, &span.trace_id);
    m.bytes(2, &span.span_id);
    if let Some(parent) = &span.parent_span_id {
        m.bytes(4, parent);
    }
    m.bytes(5, span.name.as_bytes());
    m.uint(6, SPAN_KIND_INTERNAL);
    m.fixed64(7, span.start_ns);
    m.fixed64(8, span.end_ns);
    for (key, value) in &span.attributes {
        m.message(9, key_value(key, value));
    }
    if let Some(message) = &span.error {
        let mut status = Message::default();
        status.bytes(2, message.as_bytes());
        status.uint(3, STATUS_CODE_ERROR);
        m.message(15, status);
    }
    m
}

/// One `ExportTraceServiceRequest` holding `spans` under one resource (its attributes, in
/// order) and one instrumentation scope.
pub fn export_request(
    resource: &[(String, String)],
    scope: (&str, &str),
    spans: &[Span],
) -> Vec<u8> {
    let mut res = Message::default();
    for (key, value) in resource {
        res.message(1, key_value(key, &AttrValue::Str(value.clone())));
    }
    let mut instrumentation = Message::default();
    instrumentation.bytes(1, scope.0.as_bytes());
    instrumentation.bytes(2, scope.1.as_bytes());
    let mut scope_spans = Message::default();
    scope_spans.message(1, instrumentation);
    for s in spans {
        scope_spans.message(2, span(s));
    }
    let mut resource_spans = Message::default();
    resource_spans.message(1, res);
    resource_spans.message(2, scope_spans);
    let mut request = Message::default();
    request.message(1, resource_spans);
    request.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
    use prost::Message as _;

    use super::*;

    fn spans() -> Vec<Span> {
        vec![
            Span {
                trace_id: [7; 16],
                span_id: [1; 8],
                parent_span_id: None,
                name: "headroom.compression.pipeline",
                start_ns: 1_700_000_000_000_000_000,
                end_ns: 1_700_000_000_004_000_000,
                attributes: vec![
                    ("headroom.model", AttrValue::Str("gpt-4o".into())),
                    ("headroom.tokens.before", AttrValue::Int(300)),
                    ("headroom.delta", AttrValue::Int(-5)),
                    ("headroom.duration_ms", AttrValue::Float(4.25)),
                ],
                error: None,
            },
            Span {
                trace_id: [7; 16],
                span_id: [2; 8],
                parent_span_id: Some([1; 8]),
                name: "headroom.compression.transform",
                start_ns: 1_700_000_000_001_000_000,
                end_ns: 1_700_000_000_003_000_000,
                attributes: vec![],
                error: Some("not_json".into()),
            },
        ]
    }

    /// The official generated messages read back every field we write.
    #[test]
    fn official_messages_decode_the_request() {
        let resource = vec![
            ("service.name".to_owned(), "headroom-proxy".to_owned()),
            ("deployment".to_owned(), "ünïcode".to_owned()),
        ];
        let bytes = export_request(&resource, ("headroom", "0.1.0"), &spans());
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let rs = &decoded.resource_spans[0];
        let attrs: Vec<(String, Option<Value>)> = rs
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().and_then(|v| v.value)))
            .collect();
        assert_eq!(
            attrs,
            vec![
                (
                    "service.name".into(),
                    Some(Value::StringValue("headroom-proxy".into()))
                ),
                (
                    "deployment".into(),
                    Some(Value::StringValue("ünïcode".into()))
                ),
            ]
        );
        let ss = &rs.scope_spans[0];
        let scope = ss.scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("headroom", "0.1.0")
        );
        let [pipeline, transform] = ss.spans.as_slice() else {
            panic!("two spans expected: {:?}", ss.spans);
        };
        assert_eq!(pipeline.trace_id, vec![7; 16]);
        assert_eq!(pipeline.span_id, vec![1; 8]);
        assert!(pipeline.parent_span_id.is_empty());
        assert_eq!(pipeline.name, "headroom.compression.pipeline");
        assert_eq!(pipeline.kind, SpanKind::Internal as i32);
        assert_eq!(pipeline.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(pipeline.end_time_unix_nano, 1_700_000_000_004_000_000);
        let values: Vec<(&str, Option<Value>)> = pipeline
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.clone().and_then(|v| v.value)))
            .collect();
        assert_eq!(
            values,
            vec![
                ("headroom.model", Some(Value::StringValue("gpt-4o".into()))),
                ("headroom.tokens.before", Some(Value::IntValue(300))),
                ("headroom.delta", Some(Value::IntValue(-5))),
                ("headroom.duration_ms", Some(Value::DoubleValue(4.25))),
            ]
        );
        assert!(pipeline.status.is_none());
        assert_eq!(transform.parent_span_id, vec![1; 8]);
        let status = transform.status.as_ref().unwrap();
        assert_eq!(status.code, StatusCode::Error as i32);
        assert_eq!(status.message, "not_json");
    }

    /// Varints of every length round-trip through prost's decoder.
    #[test]
    fn varints_match_prost() {
        for value in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut m = Message::default();
            m.varint(value);
            assert_eq!(
                prost::encoding::decode_varint(&mut m.0.as_slice()).unwrap(),
                value
            );
        }
    }
}
