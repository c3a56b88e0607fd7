//! A test client with full control of framing: request bodies sent as separate chunks (chunked
//! transfer encoding) or with a content length, header values as raw bytes, and the response
//! read frame by frame so streaming can be observed.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

/// A request to send.
#[derive(Clone, Debug, Default)]
pub struct ClientRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers (raw values, may be non-UTF-8).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body chunks. One chunk is sent with a content length; several are sent chunked.
    pub chunks: Vec<Vec<u8>>,
    /// Pause between body chunks.
    pub chunk_delay: Duration,
}

impl ClientRequest {
    /// A POST of a JSON `body` to a provider API path, as SDKs send it (with the Anthropic
    /// version header, which OpenAI paths ignore).
    pub fn post_json(path: &str, body: Vec<u8>) -> Self {
        ClientRequest {
            method: "POST".into(),
            path: path.into(),
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                ("anthropic-version".into(), b"2023-06-01".to_vec()),
            ],
            chunks: vec![body],
            ..ClientRequest::default()
        }
    }

    /// A GET of `path`.
    pub fn get(path: &str) -> Self {
        ClientRequest {
            method: "GET".into(),
            path: path.into(),
            ..ClientRequest::default()
        }
    }
}

/// What the client received.
#[derive(Clone, Debug)]
pub struct ClientResponse {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
    /// Sizes of the data frames as they arrived.
    pub frames: Vec<usize>,
}

impl ClientResponse {
    /// The first value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// Sends `req` to `addr` over a new HTTP/1.1 connection. `on_progress(total)` is called after
/// each response data frame with the number of body bytes received so far.
pub async fn send(
    addr: SocketAddr,
    req: &ClientRequest,
    mut on_progress: impl FnMut(usize),
) -> anyhow::Result<ClientResponse> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn_task = tokio::spawn(conn);
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(64);
    let body = if req.chunks.is_empty() {
        http_body_util::Empty::new().boxed()
    } else {
        StreamBody::new(futures_util::stream::poll_fn({
            let mut rx = rx;
            move |cx| rx.poll_recv(cx)
        }))
        .boxed()
    };
    let mut builder = hyper::Request::builder()
        .method(req.method.as_str())
        .uri(req.path.as_str());
    builder = builder.header("host", addr.to_string());
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), hyper::header::HeaderValue::from_bytes(v)?);
    }
    let total: usize = req.chunks.iter().map(Vec::len).sum();
    if req.chunks.len() == 1
        || (req.chunks.is_empty() && req.method != "GET" && req.method != "HEAD")
    {
        builder = builder.header("content-length", total.to_string());
    }
    let request = builder.body(body)?;
    let chunks = req.chunks.clone();
    let delay = req.chunk_delay;
    let feeder = tokio::spawn(async move {
        for (i, chunk) in chunks.into_iter().enumerate() {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() {
                return;
            }
        }
    });
    let response =
        tokio::time::timeout(Duration::from_secs(30), sender.send_request(request)).await??;
    let (parts, mut body) = response.into_parts();
    let mut out = Vec::new();
    let mut frames = Vec::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(30), body.frame()).await? {
        if let Ok(data) = frame?.into_data() {
            if data.is_empty() {
                continue;
            }
            frames.push(data.len());
            out.extend_from_slice(&data);
            on_progress(out.len());
        }
    }
    feeder.abort();
    conn_task.abort();
    Ok(ClientResponse {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: out,
        frames,
    })
}
