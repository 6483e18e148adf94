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
}

impl Repeat {
    pub fn body(len: u64) -> Body {
        Repeat {
            chunk: Bytes::from(vec![b'x'; CHUNK]),
            left: len,
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
        SizeHint::with_exact(self.left)
    }
}
