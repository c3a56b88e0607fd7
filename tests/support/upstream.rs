//! A real HTTP/1.1 upstream on loopback that speaks the providers' shapes: it records every
//! request exactly as received (method, path, headers in order, raw body, framing) and answers
//! either with a scripted reply (JSON or SSE, chunk by chunk, optionally in lock-step with the
//! client to prove nothing buffers) or like OpenAI / Anthropic would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

/// A request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers in arrival order (lower-case names, raw values).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// A scripted answer.
#[derive(Clone, Debug, Default)]
pub struct Scripted {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body chunks, each written (and flushed) as its own chunk.
    pub chunks: Vec<Vec<u8>>,
    /// Pause between chunks.
    pub chunk_delay: Duration,
    /// Wait for [`Upstream::release`] before each chunk after the first (proves streaming).
    pub lockstep: bool,
}

/// How the upstream answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// The same scripted answer to every request.
    Scripted(Scripted),
    /// Answer like the provider the path belongs to (JSON, or SSE when `"stream": true`).
    Provider {
        /// Pause between SSE events, to simulate generation.
        chunk_delay: Duration,
    },
}

struct Shared {
    received: Mutex<Vec<Received>>,
    reply: Mutex<Reply>,
    release: Semaphore,
    /// How long it thinks before it answers (see [`Upstream::set_answer_delay`]).
    answer_delay: Mutex<Duration>,
}

/// A running test upstream; dropped, it stops.
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Starts on 127.0.0.1 with an ephemeral port.
    pub async fn start(reply: Reply) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            reply: Mutex::new(reply),
            release: Semaphore::new(0),
            answer_delay: Mutex::new(Duration::ZERO),
        });
        let state = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // Like a real provider's edge: no Nagle delay on small writes.
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes how later requests are answered.
    pub fn set_reply(&self, reply: Reply) {
        *self.shared.reply.lock().unwrap() = reply;
    }

    /// Makes later requests wait this long, once received, before their response starts (a
    /// model thinking: a proxy's work between request and response happens meanwhile).
    pub fn set_answer_delay(&self, delay: Duration) {
        *self.shared.answer_delay.lock().unwrap() = delay;
    }

    /// Takes the requests received so far.
    pub fn take_received(&self) -> Vec<Received> {
        std::mem::take(&mut *self.shared.received.lock().unwrap())
    }

    /// Lets a lock-step reply send its next chunk.
    pub fn release(&self) {
        self.shared.release.add_permits(1);
    }

    /// Drops permits left over from an earlier exchange.
    pub fn reset_release(&self) {
        while self
            .shared
            .release
            .try_acquire()
            .map(|p| p.forget())
            .is_ok()
        {}
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type OutBody = BoxBody<Bytes, Infallible>;

async fn answer(state: Arc<Shared>, req: Request<Incoming>) -> Response<OutBody> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let received = Received {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
        body,
    };
    let reply = state.reply.lock().unwrap().clone();
    let scripted = match reply {
        Reply::Scripted(s) => s,
        Reply::Provider { chunk_delay } => provider_reply(&received, chunk_delay),
    };
    state.received.lock().unwrap().push(received);
    let delay = *state.answer_delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let chunks = scripted.chunks.clone();
    let (delay, lockstep) = (scripted.chunk_delay, scripted.lockstep);
    tokio::spawn(async move {
        for (i, chunk) in chunks.into_iter().enumerate() {
            if i > 0 {
                if lockstep {
                    // The proxy must deliver the previous chunk before this one exists.
                    match tokio::time::timeout(Duration::from_secs(10), state.release.acquire())
                        .await
                    {
                        Ok(Ok(permit)) => permit.forget(),
                        _ => return,
                    }
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            if tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() {
                return;
            }
        }
    });
    let mut response = Response::builder().status(scripted.status);
    for (k, v) in &scripted.headers {
        response = response.header(k, v);
    }
    response
        .body(StreamBody::new(tokio_stream_from(rx)).boxed())
        .unwrap_or_else(|_| Response::new(BoxBody::new(http_body_util::Empty::new())))
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// What OpenAI or Anthropic would answer to `req` (shapes only; the text is fixed).
pub fn provider_reply(req: &Received, chunk_delay: Duration) -> Scripted {
    let request: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown-model")
        .to_string();
    let path = req.path.split('?').next().unwrap_or_default();
    let words = ["Hello", " from", " the", " test", " upstream."];
    let json_reply = |value: Value| Scripted {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        chunks: vec![value.to_string().into_bytes()],
        chunk_delay,
        lockstep: false,
    };
    let sse = |events: Vec<String>| Scripted {
        status: 200,
        headers: vec![
            ("content-type".into(), "text/event-stream".into()),
            ("cache-control".into(), "no-cache".into()),
        ],
        chunks: events.into_iter().map(String::into_bytes).collect(),
        chunk_delay,
        lockstep: false,
    };
    match (path, stream) {
        ("/v1/chat/completions", false) => json_reply(json!({
            "id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": words.concat()}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                      "prompt_tokens_details": {"cached_tokens": 0}}
        })),
        ("/v1/chat/completions", true) => {
            let include_usage = request.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
            let mut events: Vec<String> = words
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let delta = if i == 0 { json!({"role": "assistant", "content": w}) } else { json!({"content": w}) };
                    let chunk = json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_700_000_000,
                                       "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
                    format!("data: {chunk}\n\n")
                })
                .collect();
            let last = json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_700_000_000,
                              "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
            events.push(format!("data: {last}\n\n"));
            if include_usage {
                let usage = json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_700_000_000,
                                   "model": model, "choices": [],
                                   "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}});
                events.push(format!("data: {usage}\n\n"));
            }
            events.push("data: [DONE]\n\n".into());
            sse(events)
        }
        ("/v1/responses", false) => json_reply(json!({
            "id": "resp_test", "object": "response", "created_at": 1_700_000_000, "model": model,
            "status": "completed",
            "output": [{"type": "message", "id": "msg_test", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": words.concat(), "annotations": []}]}],
            "usage": {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17,
                      "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
        })),
        ("/v1/messages", false) => json_reply(json!({
            "id": "msg_test", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": words.concat()}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 5, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
        })),
        ("/v1/messages", true) => {
            let mut events = vec![
                event("message_start", json!({"type": "message_start", "message": {"id": "msg_test", "type": "message", "role": "assistant",
                    "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}}})),
                event("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
            ];
            for w in words {
                events.push(event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})));
            }
            events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
            events.push(event("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 5}})));
            events.push(event("message_stop", json!({"type": "message_stop"})));
            sse(events)
        }
        ("/v1/models", _) => json_reply(json!({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1_700_000_000, "owned_by": "test"}]})),
        _ => Scripted {
            status: 404,
            headers: vec![("content-type".into(), "application/json".into())],
            chunks: vec![json!({"error": {"type": "not_found", "message": format!("test upstream has no {path}")}}).to_string().into_bytes()],
            chunk_delay,
            lockstep: false,
        },
    }
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}
