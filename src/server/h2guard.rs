//! HTTP/2 control-frame flood guard (RFC 9113 §10.5): a client that sends
//! PING, SETTINGS or PRIORITY frames faster than a budget gets GOAWAY with
//! `ENHANCE_YOUR_CALM` and the connection is closed.
//!
//! The `h2` crate answers every PING and SETTINGS frame and limits neither
//! (it bounds rapid resets and CONTINUATION itself), so the guard sits
//! between TLS and `h2` and reads frame headers, not payloads: nine bytes
//! per frame in each direction, no buffering. It counts the client's
//! non-ACK PING, SETTINGS and PRIORITY frames in a token bucket
//! ([`BURST`] frames, refilled at [`PER_SECOND`]); a browser sends a
//! handful per connection. Past the budget it writes its own GOAWAY at the
//! next frame boundary of what the server is writing (it tracks the
//! server's frames too, so it never splits one), then fails both
//! directions, which ends the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::poll_write_all;

/// Control frames a client may send at once.
pub const BURST: f64 = 200.0;
/// And per second after that.
pub const PER_SECOND: f64 = 50.0;

const PREFACE_LEN: usize = 24;
const HEADER_LEN: usize = 9;
const PRIORITY: u8 = 0x2;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Where a byte stream is in its frames.
#[derive(Debug, Default)]
struct Frames {
    /// Bytes still to skip before frames start (the client's preface).
    skip: usize,
    header: [u8; HEADER_LEN],
    filled: usize,
    /// Payload bytes of the current frame not yet seen.
    payload_left: usize,
}

impl Frames {
    /// Feeds `bytes`, calling `on_header` with each complete frame header.
    fn feed(&mut self, mut bytes: &[u8], mut on_header: impl FnMut(&[u8; HEADER_LEN])) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
            } else {
                let n = (HEADER_LEN - self.filled).min(bytes.len());
                self.header[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
                self.filled += n;
                bytes = &bytes[n..];
                if self.filled == HEADER_LEN {
                    self.filled = 0;
                    let h = self.header;
                    self.payload_left =
                        usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    on_header(&h);
                }
            }
        }
    }

    /// Between two frames (nothing of a frame half-seen).
    fn at_boundary(&self) -> bool {
        self.skip == 0 && self.filled == 0 && self.payload_left == 0
    }

    /// How many of `len` bytes can pass and still end on a frame boundary
    /// or inside the current frame: what the writer may send before the
    /// guard's own frame is due. (All of them when no frame is due.)
    fn to_boundary(&self, len: usize) -> usize {
        if self.at_boundary() {
            0
        } else if self.payload_left > 0 && self.filled == 0 {
            self.payload_left.min(len)
        } else {
            // A header is half-written: the rest of it and its payload.
            (HEADER_LEN - self.filled).min(len)
        }
    }
}

#[derive(Debug)]
enum Flood {
    No,
    /// The GOAWAY to write (and how much of it is out).
    Due {
        frame: [u8; 17],
        written: usize,
    },
    /// Written: both directions fail from now on.
    Sent,
}

/// The client side of an HTTP/2 connection, guarded.
pub(super) struct H2Guard<T> {
    inner: T,
    inbound: Frames,
    outbound: Frames,
    budget: Budget,
    flood: Flood,
    reader: Option<Waker>,
}

/// The client's control-frame budget.
#[derive(Debug)]
struct Budget {
    tokens: f64,
    refilled: Instant,
    /// The highest stream the client opened (GOAWAY's last-stream-id).
    last_stream: u32,
}

impl<T> H2Guard<T> {
    pub(super) fn new(inner: T) -> Self {
        H2Guard {
            inner,
            inbound: Frames {
                skip: PREFACE_LEN,
                ..Frames::default()
            },
            outbound: Frames::default(),
            budget: Budget {
                tokens: BURST,
                refilled: Instant::now(),
                last_stream: 0,
            },
            flood: Flood::No,
            reader: None,
        }
    }
}

impl Budget {
    /// Counts one client frame header; the GOAWAY to send once the budget
    /// is spent.
    fn frame(&mut self, h: &[u8; HEADER_LEN]) -> Option<[u8; 17]> {
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5] & 0x7f, h[6], h[7], h[8]]);
        if stream % 2 == 1 {
            self.last_stream = self.last_stream.max(stream);
        }
        let control = matches!(kind, PING | SETTINGS) && flags & ACK == 0 || kind == PRIORITY;
        if !control {
            return None;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * PER_SECOND).min(BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return None;
        }
        tracing::debug!("HTTP/2 control-frame flood: GOAWAY ENHANCE_YOUR_CALM");
        crate::metrics::get()
            .connections_refused
            .with_label_values(&["h2_flood"])
            .inc();
        let mut frame = [0u8; 17];
        frame[..HEADER_LEN].copy_from_slice(&[0, 0, 8, GOAWAY, 0, 0, 0, 0, 0]);
        frame[9..13].copy_from_slice(&self.last_stream.to_be_bytes());
        frame[13..].copy_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        Some(frame)
    }
}

fn flooded() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "HTTP/2 control-frame flood",
    )
}

impl<T: AsyncWrite + Unpin> H2Guard<T> {
    /// Writes the due GOAWAY (only ever at an outbound frame boundary).
    /// Ready(Ok) once it is out and flushed.
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Flood::Due { frame, written } = &mut self.flood else {
            return Poll::Ready(Ok(()));
        };
        std::task::ready!(poll_write_all(&mut self.inner, cx, &frame[..], written))?;
        self.flood = Flood::Sent;
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for H2Guard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.flood {
            Flood::Sent => return Poll::Ready(Err(flooded())),
            Flood::Due { .. } if this.outbound.at_boundary() => {
                std::task::ready!(this.poll_goaway(cx))?;
                return Poll::Ready(Err(flooded()));
            }
            // The server is mid-frame: its writer sends the GOAWAY when the
            // frame is out; nothing more is read meanwhile.
            Flood::Due { .. } => {
                this.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Flood::No => {}
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let (budget, flood) = (&mut this.budget, &mut this.flood);
        this.inbound.feed(&buf.filled()[before..], |h| {
            if let (Flood::No, Some(frame)) = (&*flood, budget.frame(h)) {
                *flood = Flood::Due { frame, written: 0 };
            }
        });
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for H2Guard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let allowed = match this.flood {
            Flood::Sent => return Poll::Ready(Err(flooded())),
            Flood::Due { .. } => {
                let n = this.outbound.to_boundary(data.len());
                if n == 0 {
                    std::task::ready!(this.poll_goaway(cx))?;
                    return Poll::Ready(Err(flooded()));
                }
                n
            }
            Flood::No => data.len(),
        };
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, &data[..allowed]))?;
        this.outbound.feed(&data[..n], |_| {});
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, kind: u8, flags: u8, stream: u32) -> Vec<u8> {
        let mut h = len.to_be_bytes()[1..].to_vec();
        h.extend([kind, flags]);
        h.extend(stream.to_be_bytes());
        h
    }

    #[test]
    fn frames_are_found_across_any_split() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(header(6, SETTINGS, 0, 0));
        bytes.extend([0; 6]);
        bytes.extend(header(8, PING, 0, 0));
        bytes.extend([7; 8]);
        bytes.extend(header(0, SETTINGS, ACK, 0));
        for chunk in 1..bytes.len() {
            let mut f = Frames {
                skip: PREFACE_LEN,
                ..Frames::default()
            };
            let mut seen = Vec::new();
            for part in bytes.chunks(chunk) {
                f.feed(part, |h| seen.push((h[3], h[4])));
            }
            assert_eq!(
                seen,
                [(SETTINGS, 0), (PING, 0), (SETTINGS, ACK)],
                "chunk {chunk}"
            );
            assert!(f.at_boundary());
        }
    }

    #[test]
    fn the_writer_may_finish_its_frame_and_no_more() {
        let mut f = Frames::default();
        let mut frame = header(4, 0x0, 0, 1);
        frame.extend([1, 2, 3, 4]);
        f.feed(&frame[..5], |_| {});
        assert_eq!(f.to_boundary(100), 4, "the rest of the header");
        f.feed(&frame[5..11], |_| {});
        assert_eq!(f.to_boundary(100), 2, "the rest of the payload");
        f.feed(&frame[11..], |_| {});
        assert_eq!(f.to_boundary(100), 0);
    }
}
