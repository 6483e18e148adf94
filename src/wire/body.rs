//! The client's request body, as its connection delivers it: hyper's body
//! on HTTP/1.1, the `h2` stream's data on HTTP/2 (`crate::server` serves
//! HTTP/2 with `h2` itself). Everything after the listener reads a request
//! body through this one type.
//!
//! On HTTP/2 each chunk read gives its bytes back to the client's flow
//! control window at once, so a body is pulled only as fast as its reader
//! reads it. `h2` itself holds a body to its `Content-Length` (RFC 9113
//! §8.1.1); the size hint counts down what the field still promises, so an
//! upstream request can keep an exact length. A stream the client resets
//! ends the body with an error, whatever the reset's code: a body cut short
//! must not reach the upstream looking complete.

use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::headers::content_length;

/// A client's request body.
#[derive(Debug)]
pub enum ClientBody {
    /// HTTP/1.1, decoded by hyper.
    H1(Incoming),
    /// HTTP/2: one stream's DATA and trailers.
    H2(H2Body),
}

/// An HTTP/2 request body.
#[derive(Debug)]
pub struct H2Body {
    recv: h2::RecvStream,
    /// What the client's `Content-Length` still promises, when it sent one.
    remaining: Option<u64>,
    data_done: bool,
}

impl ClientBody {
    /// The body of an HTTP/2 request with these `headers`.
    pub fn h2(recv: h2::RecvStream, headers: &HeaderMap) -> ClientBody {
        ClientBody::H2(H2Body {
            recv,
            // `h2` has refused a malformed one already.
            remaining: content_length(headers).ok().flatten(),
            data_done: false,
        })
    }
}

/// Why a client's body could not be read.
#[derive(Debug)]
pub enum ClientBodyError {
    H1(hyper::Error),
    H2(h2::Error),
}

impl fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientBodyError::H1(e) => write!(f, "reading the request body: {e}"),
            ClientBodyError::H2(e) => write!(f, "reading the HTTP/2 request body: {e}"),
        }
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientBodyError::H1(e) => Some(e),
            ClientBodyError::H2(e) => Some(e),
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            ClientBody::H1(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(ClientBodyError::H1))),
            ClientBody::H2(body) => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::H1(body) => body.is_end_stream(),
            ClientBody::H2(body) => body.recv.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::H1(body) => body.size_hint(),
            ClientBody::H2(body) => match body.remaining {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
        }
    }
}

impl H2Body {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // The reader has it: the client may send as much again.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(n) = &mut self.remaining {
                        *n = n.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(ClientBodyError::H2(e)))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Err(e) => Poll::Ready(Some(Err(ClientBodyError::H2(e)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderValue, CONTENT_LENGTH};

    fn lengths(values: &[&'static str]) -> Option<u64> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CONTENT_LENGTH, HeaderValue::from_static(v));
        }
        // As `ClientBody::h2` reads it for the size hint.
        content_length(&h).ok().flatten()
    }

    #[test]
    fn content_length_is_the_one_value_all_fields_agree_on() {
        assert_eq!(lengths(&[]), None);
        assert_eq!(lengths(&["12"]), Some(12));
        assert_eq!(lengths(&["12", "12"]), Some(12));
        assert_eq!(lengths(&["12", "13"]), None);
        assert_eq!(lengths(&["+12"]), None);
        assert_eq!(lengths(&["1 2"]), None);
        assert_eq!(lengths(&[""]), None);
        assert_eq!(lengths(&["99999999999999999999999"]), None);
    }
}
