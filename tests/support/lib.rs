//! Support for the cross-host tests in `tests/` and the benchmarks in `benches/`: a loopback
//! test upstream that speaks the providers' shapes, a client with full control of framing, the
//! scenario format and runner, and ways to start each proxy under test (our host in-process or
//! as the real binary, and a real Envoy).

pub mod client;
pub mod corpus;
pub mod envoy;
pub mod headroom;
pub mod otel;
pub mod prom;
pub mod scenario;
pub mod upstream;
