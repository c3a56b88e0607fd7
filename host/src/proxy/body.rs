//! Bodies that stream: a body fed frame by frame through a channel, so neither direction is ever
//! buffered by the host beyond what the filter asks for.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use tokio::sync::mpsc;

/// The error type of bodies the host produces.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of responses sent to clients.
pub type ClientBody = UnsyncBoxBody<Bytes, BoxError>;

/// A whole body, for local responses.
pub fn full(bytes: impl Into<Bytes>) -> ClientBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The sending half of a [`ChannelBody`].
pub type BodySender = mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

/// A body whose frames arrive through a channel; it ends when the sender is dropped.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
    done: bool,
}

impl ChannelBody {
    /// A channel body and its sender. A small bound keeps back-pressure end to end.
    pub fn new() -> (BodySender, Self) {
        let (tx, rx) = mpsc::channel(16);
        (tx, Self { rx, done: false })
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A request body for the upstream: nothing, or frames from a channel.
pub enum UpstreamBody {
    /// No body (the downstream request had none).
    Empty,
    /// Frames as the filter releases them.
    Channel(ChannelBody),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Channel(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Channel(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Channel(body) => body.size_hint(),
        }
    }
}
