//! What keeps one client or one upstream from holding the proxy: a connection limit, client
//! timeouts (headers, body, idle keep-alive) and upstream timeouts (connect, first byte), plus
//! the bookkeeping the idle timeout needs (when a connection last moved a byte, and whether a
//! request is in flight on it).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::body::{BoxError, ClientBody};

/// Limits and timeouts of `headroom proxy` (see README, "Hardening").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hardening {
    /// Client connections open at once, across every worker; one more is answered 503 and
    /// closed.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, from their first byte.
    pub header_read_timeout: Duration,
    /// Time the proxy waits, in total, for a request's body from the client (time spent waiting
    /// for the upstream to take the bytes does not count).
    pub body_read_timeout: Duration,
    /// Time a connection with no request in flight may stay open without a byte moving.
    pub idle_timeout: Duration,
    /// Time to open a TCP connection to an upstream.
    pub upstream_connect_timeout: Duration,
    /// Time from the end of the request to the upstream's response headers.
    pub upstream_first_byte_timeout: Duration,
}

impl Default for Hardening {
    /// The production defaults (the flags' defaults).
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
            upstream_connect_timeout: Duration::from_secs(10),
            upstream_first_byte_timeout: Duration::from_secs(600),
        }
    }
}

/// The state of one client connection the idle timeout looks at (atomics: response bodies
/// must be `Send`).
#[derive(Clone)]
pub struct Activity {
    opened: Instant,
    /// Nanoseconds from `opened` to the last byte moved.
    last: Arc<AtomicU64>,
    in_flight: Arc<AtomicUsize>,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// A connection that has just been accepted.
    pub fn new() -> Self {
        Self {
            opened: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    /// When the connection becomes idle-expired if nothing happens: `None` while a request is
    /// in flight.
    pub fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        (self.in_flight.load(Ordering::Relaxed) == 0)
            .then(|| self.opened + Duration::from_nanos(self.last.load(Ordering::Relaxed)) + idle)
    }

    /// Marks a request in flight until the returned guard is dropped.
    pub fn request(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }
}

/// A request in flight on a connection (see [`Activity::request`]).
pub struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        let _ = self
            .0
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

/// A response body that keeps its request in flight until hyper has taken all of it (or
/// dropped it).
pub fn hold_until_sent(body: ClientBody, guard: InFlight) -> ClientBody {
    use http_body_util::BodyExt as _;
    Held {
        inner: body,
        _guard: guard,
    }
    .boxed_unsync()
}

struct Held {
    inner: ClientBody,
    _guard: InFlight,
}

impl Body for Held {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client socket that records when it last read or wrote a byte.
pub struct Tracked<T> {
    inner: T,
    activity: Activity,
}

impl<T> Tracked<T> {
    /// Wraps `inner`, reporting to `activity`.
    pub fn new(inner: T, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The answer to a connection over the limit: a complete HTTP/1.1 503 that closes.
pub const OVER_LIMIT_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
connection: close\r\n\
retry-after: 1\r\n\
content-length: 99\r\n\
\r\n\
{\"error\":{\"type\":\"overloaded\",\"message\":\"headroom is at its connection limit; retry in a moment\"}}\n";

/// Answers a connection over the limit with [`OVER_LIMIT_RESPONSE`] and closes it, reading (and
/// discarding) what the client sent for at most a second first, so the close is not a reset
/// that would hide the answer.
pub async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(OVER_LIMIT_RESPONSE).await;
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        let mut budget = 64 * 1024;
        while budget > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => budget -= n.min(budget),
            }
        }
    })
    .await;
}

/// Whether `error` (or an error it was caused by) is an I/O timeout: how the upstream
/// client reports a connect timeout.
pub fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
        {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_limit_response_length_matches() {
        let text = std::str::from_utf8(OVER_LIMIT_RESPONSE).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }

    #[test]
    fn idle_deadline_waits_for_requests() {
        let activity = Activity::new();
        let idle = Duration::from_secs(5);
        assert!(activity.idle_deadline(idle).is_some());
        let guard = activity.request();
        assert_eq!(activity.idle_deadline(idle), None);
        drop(guard);
        assert!(activity.idle_deadline(idle).is_some());
    }

    #[test]
    fn timeouts_are_found_in_the_cause_chain() {
        #[derive(Debug)]
        struct Outer(io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("outer")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let timed_out = Outer(io::Error::new(io::ErrorKind::TimedOut, "connect timeout"));
        assert!(is_timeout(&timed_out));
        let refused = Outer(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"));
        assert!(!is_timeout(&refused));
    }
}
