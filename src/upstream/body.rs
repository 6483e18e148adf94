//! The body of an upstream request: the client's body as it arrives, or
//! ([`RequestBody::replay`]) the frames the proxy has already read from it
//! (a login form it looked into, SPEC §8.4a) followed by the rest, unread.
//!
//! A replayed body sends the very frames it was given, in order, so what
//! reaches the upstream is byte for byte what the client sent. Its size hint
//! is what is left of the read frames plus the rest's own hint (a
//! [`ClientBody`] counts down its `Content-Length` as it is read), so an exact
//! length stays exact and the upstream request keeps its `Content-Length`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::BodyError;
use crate::wire::body::{ClientBody, ClientBodyError};

/// What the upstream client sends as a request body.
#[derive(Debug)]
pub enum RequestBody {
    /// The client's body, streamed as it arrives.
    Client(ClientBody),
    /// Frames already read, then the rest of the client's body (boxed: only
    /// a login form is replayed, and the upstream request is moved through
    /// every request's pipeline).
    Replay(Box<Replay>),
}

/// Frames read ahead, replayed before the unread rest.
#[derive(Debug)]
pub struct Replay {
    data: VecDeque<Bytes>,
    /// Trailers read with the data (they end the body).
    trailers: Option<HeaderMap>,
    /// The error that stopped the read, passed on after the data.
    error: Option<ClientBodyError>,
    /// `None` when the body was read to its end.
    rest: Option<ClientBody>,
}

impl RequestBody {
    /// `data` (the frames read, in order), then `trailers` or `error` when
    /// the read met them, then `rest` when the body had not ended.
    pub fn replay(
        data: Vec<Bytes>,
        trailers: Option<HeaderMap>,
        error: Option<ClientBodyError>,
        rest: Option<ClientBody>,
    ) -> RequestBody {
        RequestBody::Replay(Box::new(Replay {
            data: data.into_iter().filter(|b| !b.is_empty()).collect(),
            trailers,
            error,
            rest,
        }))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Client(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BodyError::from))),
            RequestBody::Replay(r) => {
                if let Some(chunk) = r.data.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                if let Some(e) = r.error.take() {
                    r.rest = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                if let Some(t) = r.trailers.take() {
                    r.rest = None;
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
                match r.rest.as_mut() {
                    Some(rest) => Pin::new(rest)
                        .poll_frame(cx)
                        .map(|f| f.map(|r| r.map_err(BodyError::from))),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client(body) => body.is_end_stream(),
            RequestBody::Replay(r) => {
                r.data.is_empty()
                    && r.error.is_none()
                    && r.trailers.is_none()
                    && r.rest.as_ref().is_none_or(Body::is_end_stream)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client(body) => body.size_hint(),
            RequestBody::Replay(r) => {
                let read: u64 = r.data.iter().map(|b| b.remaining() as u64).sum();
                match (&r.rest, &r.error) {
                    // Trailers need chunked framing, which an unknown
                    // length keeps.
                    _ if r.trailers.is_some() => {
                        let mut h = SizeHint::new();
                        h.set_lower(read);
                        h
                    }
                    (_, Some(_)) => {
                        let mut h = SizeHint::new();
                        h.set_lower(read);
                        h
                    }
                    (None, None) => SizeHint::with_exact(read),
                    (Some(rest), None) => {
                        let inner = rest.size_hint();
                        let mut h = SizeHint::new();
                        h.set_lower(inner.lower().saturating_add(read));
                        if let Some(upper) = inner.upper() {
                            h.set_upper(upper.saturating_add(read));
                        }
                        h
                    }
                }
            }
        }
    }
}
