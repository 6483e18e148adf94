//! HTTP/1.1 request-framing guard: between TLS and hyper, it follows the
//! client's requests through their framing and refuses two things hyper
//! lets through (RFC 9112):
//!
//! - a request line with no line end within `max_request_header_bytes`:
//!   `414 URI Too Long`. hyper only says 414 for a target over 64 KiB in a
//!   head that fits its header limit, so with a smaller limit a long target
//!   always met 431 about the header fields instead;
//! - a chunk size above [`framing::MAX_CHUNK_SIZE`] (2^52 or more): 400.
//!   hyper only checks that the size fits a `u64`. HAProxy refuses 2^52 and
//!   more, so that no reader keeping integers in doubles (JavaScript, Lua)
//!   gets a rounded size; nginx stops near 2^63 (`off_t`). cloakroom takes
//!   HAProxy's bound: 4 PiB is no body anyone sends. (The body is framed
//!   anew toward the upstream, so the client's sizes never reach it: the
//!   bound refuses what no real client sends; it protects no parser here.)
//!
//! The guard only judges while it is sure how hyper reads the same bytes.
//! It mirrors hyper's grammar (the request line and header fields by line,
//! `Content-Length` bodies by count, chunked bodies by hyper's own states)
//! and stops judging for the rest of the connection at anything else: both
//! or repeated length headers, another transfer coding, `Upgrade` (after a
//! 101 the bytes are not HTTP), `CONNECT`, `Expect`, obs-fold, a relevant
//! header line too long to keep the start of, any byte hyper would refuse.
//! From then on bytes pass unchanged and hyper decides alone.
//!
//! Cost: header lines are found with `memchr` and only their first byte is
//! looked at unless it can start a header that matters; bodies are skipped
//! by count; nothing is allocated. Only a line's first
//! [`framing::LINE_KEPT`] bytes are judged (a split line keeps them in a
//! fixed array), so the verdict never depends on how the bytes were split
//! into reads. The tracker is [`framing`], pure and tested on its own.
//!
//! How a refusal is answered without ever cutting into a response:
//! - 414: the request line's bytes from the `max`-th on are withheld from
//!   hyper (so it never reaches its own 431). The 414 is written when hyper
//!   owes the client nothing: at a flush of hyper's (hyper flushes only an
//!   empty buffer) when every request hyper was given has been answered.
//!   Then the write side is closed and what the client still sends is read
//!   and dropped (up to [`LINGER_BYTES`]): closing a socket with unread
//!   input sends a reset, which can destroy the 414 before it is read.
//! - 400: hyper has the request already. The guard raises the connection's
//!   refusal flag and fails hyper's read, so the request's body ends in an
//!   error; the service sees the flag when its response comes back and
//!   answers 400 with `Connection: close` instead ([`refused_response`]).
//!   A response that had already been handed to hyper is left to finish,
//!   and hyper closes the connection after it (its read side is closed).
//!
//! Both are counted in `cloakroom_connections_refused_total`
//! (`reason="h1_target_too_long"`, `"h1_chunk_size"`).

mod framing;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::supervise::Activity;
use crate::net::poll_write_all;
use crate::reply::ProxyBody;

pub use framing::{Framing, Verdict};

/// Client bytes read and dropped after a 414 before the connection closes.
pub const LINGER_BYTES: usize = 1 << 20;

const URI_TOO_LONG: &[u8] =
    b"HTTP/1.1 414 URI Too Long\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// The response to a request whose body the guard refused.
pub(super) fn refused_response() -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[derive(Debug)]
enum Refusal {
    No,
    /// The 414 to write once hyper owes nothing (and how much is out).
    Due {
        written: usize,
    },
    /// Written and the write side closed: client bytes are dropped.
    Linger {
        dropped: usize,
    },
    /// A chunk size refused: hyper's reads fail.
    Body,
}

/// The client side of an HTTP/1.1 connection, guarded.
pub(super) struct H1Guard<T> {
    inner: T,
    framing: Framing,
    activity: Arc<Activity>,
    refusal: Refusal,
}

impl<T> H1Guard<T> {
    pub(super) fn new(inner: T, max_head: usize, activity: Arc<Activity>) -> Self {
        H1Guard {
            inner,
            framing: Framing::new(max_head),
            activity,
            refusal: Refusal::No,
        }
    }
}

fn refused() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "HTTP/1.1 request refused")
}

impl<T: AsyncRead + AsyncWrite + Unpin> H1Guard<T> {
    /// Writes the 414, flushes and closes the write side. Ready(Ok) once done.
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Refusal::Due { written } = &mut self.refusal else {
            return Poll::Ready(Ok(()));
        };
        std::task::ready!(poll_write_all(&mut self.inner, cx, URI_TOO_LONG, written))?;
        std::task::ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
        self.refusal = Refusal::Linger { dropped: 0 };
        // hyper is parked on a read: wake it to drain and end.
        cx.waker().wake_by_ref();
        Poll::Ready(Ok(()))
    }

    /// Reads and drops client bytes; Ready (EOF to hyper) when the client
    /// is done or has sent [`LINGER_BYTES`].
    fn poll_linger(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        loop {
            let Refusal::Linger { dropped } = &mut self.refusal else {
                return Poll::Ready(Ok(()));
            };
            if *dropped >= LINGER_BYTES || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let r = Pin::new(&mut self.inner).poll_read(cx, buf);
            let n = buf.filled().len() - before;
            buf.set_filled(before);
            match r {
                Poll::Ready(Ok(())) if n > 0 => *dropped += n,
                // The client's end (read by hyper as the end), an error, or
                // nothing yet.
                other => return other,
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for H1Guard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.refusal {
            Refusal::No => {}
            // hyper flushes after every read it tries; the 414 goes out then.
            Refusal::Due { .. } => return Poll::Pending,
            Refusal::Linger { .. } => return this.poll_linger(cx, buf),
            Refusal::Body => return Poll::Ready(Err(refused())),
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.framing.is_off() {
            return Poll::Ready(Ok(()));
        }
        let Some((n, verdict)) = this.framing.feed(&buf.filled()[before..]) else {
            return Poll::Ready(Ok(()));
        };
        tracing::debug!(reason = verdict.reason(), "HTTP/1.1 request refused");
        crate::metrics::get()
            .connections_refused
            .with_label_values(&[verdict.reason()])
            .inc();
        buf.set_filled(before + n);
        this.refusal = match verdict {
            Verdict::TargetTooLong => Refusal::Due { written: 0 },
            Verdict::ChunkTooLarge => {
                this.activity.refuse_body();
                Refusal::Body
            }
        };
        match (n, verdict) {
            // Zero bytes would read as the end of the stream.
            (0, Verdict::TargetTooLong) => Poll::Pending,
            (0, Verdict::ChunkTooLarge) => Poll::Ready(Err(refused())),
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for H1Guard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Refusal::Linger { .. } = self.refusal {
            return Poll::Ready(Err(refused()));
        }
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.refusal {
            // hyper's buffer is empty when it flushes; once every request it
            // was given is answered, nothing of its can follow the 414.
            Refusal::Due { .. } if this.activity.answered(this.framing.heads()) => {
                this.poll_refuse(cx)
            }
            Refusal::Linger { .. } => Poll::Ready(Ok(())),
            _ => Pin::new(&mut this.inner).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Refusal::Linger { .. } = self.refusal {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
