//! Request and response bodies for the fixtures: small full bodies, and
//! large ones generated chunk by chunk so no test holds them in one buffer.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};

pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

pub fn empty() -> Body {
    Empty::new().boxed()
}

const CHUNK: usize = 64 * 1024;

/// `len` bytes in 64 KiB frames that all share one buffer.
pub struct Repeat {
    chunk: Bytes,
    left: u64,
    /// Whether the size hint tells the length (HTTP/1.1 then sends
    /// `Content-Length`, else chunked; HTTP/2 sends no length).
    exact: bool,
}

impl Repeat {
    pub fn body(len: u64) -> Body {
        Self::make(len, true)
    }

    /// The same bytes without a known length.
    pub fn unsized_body(len: u64) -> Body {
        Self::make(len, false)
    }

    fn make(len: u64, exact: bool) -> Body {
        let chunk = Bytes::from(vec![b'x'; CHUNK]);
        Repeat {
            chunk,
            left: len,
            exact,
        }
        .boxed()
    }
}

impl http_body::Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.left)
        } else {
            SizeHint::default()
        }
    }
}

/// `tick\n`, a silence of `gap`, then `tock\n`: a slow stream such as
/// server-sent events.
pub struct Drip {
    sent: u8,
    gap: Pin<Box<tokio::time::Sleep>>,
}

impl Drip {
    pub fn body(gap: std::time::Duration) -> Body {
        Drip {
            sent: 0,
            gap: Box::pin(tokio::time::sleep(gap)),
        }
        .boxed()
    }
}

impl http_body::Body for Drip {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.sent {
            0 => {
                self.sent = 1;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"tick\n")))))
            }
            1 => {
                std::task::ready!(std::future::Future::poll(self.gap.as_mut(), cx));
                self.sent = 2;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"tock\n")))))
            }
            _ => Poll::Ready(None),
        }
    }
}
