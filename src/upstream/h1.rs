//! A lean HTTP/1.1 exchange for requests without a body, driven from the
//! request's own future: the head is written, the response head parsed with
//! `httparse`, and the body read from the socket by whoever polls it (the
//! client connection's task). No connection task, no channels; hyper's
//! client (the parent module) keeps requests with bodies and upgrades.
//!
//! Framing follows RFC 9112 §6.3, strictly: a response to `HEAD` and a
//! `204` or `304` have no body; `Transfer-Encoding: chunked` (the only
//! coding understood) is decoded; a `Content-Length` must be one valid
//! number (repeated identically at most); neither means "read to close".
//! A `Transfer-Encoding` beside a `Content-Length`, any other coding, an
//! obsolete line folding or a head past hyper's limits is a bad response.
//! A connection goes back to the pool only after a clean end with nothing
//! beyond it, on HTTP/1.1, and without `Connection: close`.

use std::io;
use std::mem::MaybeUninit;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use std::future::Future;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wire::headers::{content_length, has_token, ContentLengthError};

/// hyper's client limits, kept so the fast path refuses nothing it took.
const MAX_HEADERS: usize = 100;
const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// A chunk-size line or one trailer line longer than this is refused.
const MAX_LINE: usize = 4096;
/// Trailers are read and dropped, up to this much in all.
const MAX_TRAILERS: usize = 16 * 1024;
/// A response head up to this size is copied once, and its header values
/// are slices of that copy.
const SHARE_HEAD_BELOW: usize = 4096;
/// Bytes asked of the socket per read.
const READ_SIZE: usize = 8192;
/// Body chunks below this are copied out, larger ones split off the buffer
/// (a split leaves the buffer shared, and the next read must reallocate).
const COPY_BELOW: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("upstream connection failed")]
    Io(#[from] io::Error),
    #[error("upstream closed the connection before a complete response")]
    Closed,
    #[error("invalid upstream response: {0}")]
    Invalid(&'static str),
}

/// A kept-alive upstream connection and the bytes read past the last
/// response (always none when it is pooled).
#[derive(Debug)]
pub struct Conn {
    tcp: TcpStream,
    buf: BytesMut,
    out: Vec<u8>,
}

impl Conn {
    pub fn new(tcp: TcpStream) -> Conn {
        Conn {
            tcp,
            buf: BytesMut::with_capacity(READ_SIZE),
            out: Vec::with_capacity(1024),
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 2 {
            self.buf.reserve(READ_SIZE);
        }
        // Through `AsyncRead`, not `try_read_buf`: tokio then takes a short
        // read as "drained" and waits for the next event, where a
        // `try_read` would spend a syscall on `EAGAIN` for every response.
        // The future reads nothing until it is ready, so dropping it when
        // pending loses nothing.
        std::pin::pin!(self.tcp.read_buf(&mut self.buf)).poll(cx)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

/// The outcome of one exchange.
pub struct Exchange {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: LeanBody,
}

/// Why an exchange failed, and whether any response byte had arrived (a
/// reused connection that gave nothing back may be retried).
pub struct Failed {
    pub error: H1Error,
    pub answered: bool,
}

/// Writes `req` (whose body is empty) and reads the response head.
pub async fn exchange(
    mut conn: Conn,
    req: &Request<super::RequestBody>,
) -> Result<Exchange, Failed> {
    let fail = |error, answered| Failed { error, answered };
    encode(&mut conn.out, req);
    if let Err(e) = conn.tcp.write_all(&conn.out).await {
        return Err(fail(e.into(), false));
    }
    conn.buf.clear();
    // Parsing waits for bytes: there is nothing to parse before the first
    // read, and more is read only when what is there is not a whole head.
    let mut read = true;
    loop {
        if read {
            let answered = !conn.buf.is_empty();
            match conn.fill().await {
                Ok(0) => return Err(fail(H1Error::Closed, answered)),
                Ok(_) => {}
                Err(e) => return Err(fail(e.into(), answered)),
            }
        }
        read = true;
        match parse_head(&conn.buf) {
            Ok(Some((head, len))) => {
                conn.buf.advance(len);
                if head.status.is_informational() {
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(fail(H1Error::Invalid("unexpected 101"), true));
                    }
                    // The final head may have come with it.
                    read = false;
                    continue;
                }
                let is_head = req.method() == Method::HEAD;
                let (decode, keep) = framing(is_head, &head).map_err(|e| fail(e, true))?;
                return Ok(Exchange {
                    status: head.status,
                    version: head.version,
                    headers: head.headers,
                    body: LeanBody {
                        conn: Some(conn),
                        decode,
                        keep,
                    },
                });
            }
            Ok(None) => {}
            Err(e) => return Err(fail(e, true)),
        }
        if conn.buf.len() > MAX_HEAD_BYTES {
            return Err(fail(H1Error::Invalid("response head too large"), true));
        }
    }
}

/// `METHOD target HTTP/1.1`, the headers as they are, an empty line.
fn encode(out: &mut Vec<u8>, req: &Request<super::RequestBody>) {
    out.clear();
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[derive(Debug)]
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
}

/// A complete head and its length, `None` when more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, H1Error> {
    // Slots left uninitialised: httparse writes those it fills, and
    // zeroing all of them cost more than parsing a usual head.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(H1Error::Invalid("too many headers")),
        Err(_) => return Err(H1Error::Invalid("malformed response head")),
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(H1Error::Invalid("bad status code"))?;
    let version = match resp.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    // A usual head is copied once and its values share that copy (one
    // allocation, not one per value); a large one is copied value by value,
    // so a value kept for long (in an HTTP/2 connection's HPACK table, say)
    // holds only its own bytes.
    let shared = (len <= SHARE_HEAD_BELOW).then(|| Bytes::copy_from_slice(&buf[..len]));
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| H1Error::Invalid("bad header name"))?;
        let value = match &shared {
            Some(head) => {
                let start = h.value.as_ptr() as usize - buf.as_ptr() as usize;
                HeaderValue::from_maybe_shared(head.slice(start..start + h.value.len()))
            }
            None => HeaderValue::from_bytes(h.value),
        }
        .map_err(|_| H1Error::Invalid("bad header value"))?;
        headers.append(name, value);
    }
    Ok(Some((
        Head {
            status,
            version,
            headers,
        },
        len,
    )))
}

/// How the body is delimited, and whether the connection may be reused.
fn framing(is_head: bool, head: &Head) -> Result<(Decode, bool), H1Error> {
    let h = &head.headers;
    let mut keep = head.version == Version::HTTP_11 && !has_token(h, &header::CONNECTION, "close");
    let te = h.contains_key(header::TRANSFER_ENCODING);
    let cl = content_length(h).map_err(|e| match e {
        ContentLengthError::Malformed => H1Error::Invalid("bad Content-Length"),
        ContentLengthError::Conflicting => H1Error::Invalid("conflicting Content-Length"),
    })?;
    if te && cl.is_some() {
        return Err(H1Error::Invalid(
            "both Transfer-Encoding and Content-Length",
        ));
    }
    if is_head || head.status == StatusCode::NO_CONTENT || head.status == StatusCode::NOT_MODIFIED {
        return Ok((Decode::Length(0), keep));
    }
    let decode = if te {
        let mut codings = h
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty());
        match (codings.next(), codings.next()) {
            (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Decode::Chunked(Chunk::Size),
            _ => return Err(H1Error::Invalid("unsupported Transfer-Encoding")),
        }
    } else if let Some(n) = cl {
        Decode::Length(n)
    } else {
        keep = false;
        Decode::Close
    };
    Ok((decode, keep))
}

/// Where the body decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    Chunked(Chunk),
    /// Until the upstream closes.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Bytes left of the current chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines, and how many bytes of them so far.
    Trailers(usize),
    Done,
}

/// One step of decoding what is buffered.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Data(Bytes),
    /// More bytes are needed.
    More,
    End,
}

impl Decode {
    fn is_done(&self) -> bool {
        matches!(self, Decode::Length(0) | Decode::Chunked(Chunk::Done))
    }

    /// Decodes from `buf`; `eof` when the upstream has closed.
    fn step(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Step, H1Error> {
        match self {
            Decode::Length(0) => Ok(Step::End),
            Decode::Length(left) => {
                if buf.is_empty() {
                    return if eof {
                        Err(H1Error::Closed)
                    } else {
                        Ok(Step::More)
                    };
                }
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                Ok(Step::Data(take(buf, n)))
            }
            Decode::Close => {
                if buf.is_empty() {
                    return Ok(if eof { Step::End } else { Step::More });
                }
                let n = buf.len();
                Ok(Step::Data(take(buf, n)))
            }
            Decode::Chunked(state) => loop {
                match *state {
                    Chunk::Done => return Ok(Step::End),
                    Chunk::Size => {
                        let Some(line) = line(buf)? else {
                            return more(eof);
                        };
                        let size = chunk_size(&line)?;
                        *state = if size == 0 {
                            Chunk::Trailers(0)
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Chunk::Data(left) => {
                        if buf.is_empty() {
                            return more(eof);
                        }
                        let n = left.min(buf.len() as u64) as usize;
                        *state = match left - n as u64 {
                            0 => Chunk::DataEnd,
                            rest => Chunk::Data(rest),
                        };
                        return Ok(Step::Data(take(buf, n)));
                    }
                    Chunk::DataEnd => {
                        if buf.len() < 2 {
                            return more(eof);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err(H1Error::Invalid("chunk data not followed by CRLF"));
                        }
                        buf.advance(2);
                        *state = Chunk::Size;
                    }
                    Chunk::Trailers(seen) => {
                        let Some(line) = line(buf)? else {
                            return more(eof);
                        };
                        let seen = seen + line.len() + 2;
                        if seen > MAX_TRAILERS {
                            return Err(H1Error::Invalid("trailers too large"));
                        }
                        *state = if line.is_empty() {
                            Chunk::Done
                        } else {
                            Chunk::Trailers(seen)
                        };
                    }
                }
            },
        }
    }
}

fn more(eof: bool) -> Result<Step, H1Error> {
    if eof {
        Err(H1Error::Closed)
    } else {
        Ok(Step::More)
    }
}

/// The first `n` buffered bytes, copied when small.
fn take(buf: &mut BytesMut, n: usize) -> Bytes {
    if n < COPY_BELOW {
        let b = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        b
    } else {
        buf.split_to(n).freeze()
    }
}

/// One CRLF-terminated line taken off `buf`, without the CRLF; `None`
/// until it is complete. A bare LF or an over-long line is refused.
fn line(buf: &mut BytesMut) -> Result<Option<BytesMut>, H1Error> {
    match memchr::memchr(b'\n', buf) {
        Some(i) if i > 0 && buf[i - 1] == b'\r' && i <= MAX_LINE => {
            let mut l = buf.split_to(i + 1);
            l.truncate(i - 1);
            Ok(Some(l))
        }
        Some(i) if i > MAX_LINE => Err(H1Error::Invalid("line too long")),
        Some(_) => Err(H1Error::Invalid("bare LF in chunked framing")),
        None if buf.len() > MAX_LINE => Err(H1Error::Invalid("line too long")),
        None => Ok(None),
    }
}

/// `1*HEXDIG [ chunk-ext ]`: the size, extensions ignored.
fn chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let end = line
        .iter()
        .position(|&b| b == b';' || b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    let digits = &line[..end];
    if digits.is_empty() || digits.len() > 16 {
        return Err(H1Error::Invalid("bad chunk size"));
    }
    let rest = line[end..].trim_ascii_start();
    if !(rest.is_empty() || rest[0] == b';') {
        return Err(H1Error::Invalid("bad chunk size"));
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let v = (d as char)
            .to_digit(16)
            .ok_or(H1Error::Invalid("bad chunk size"))?;
        Ok((n << 4) | u64::from(v))
    })
}

/// A response body read from its connection; hands the connection back
/// through `release` after a clean end.
#[derive(Debug)]
pub struct LeanBody {
    conn: Option<Conn>,
    decode: Decode,
    keep: bool,
}

impl LeanBody {
    pub fn is_end_stream(&self) -> bool {
        self.decode.is_done()
    }

    pub fn size_hint(&self) -> http_body::SizeHint {
        match self.decode {
            Decode::Length(n) => http_body::SizeHint::with_exact(n),
            _ => http_body::SizeHint::default(),
        }
    }

    /// The next data, `None` at the end (then `take_conn` may give the
    /// connection back).
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, H1Error>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        let mut eof = false;
        loop {
            match self.decode.step(&mut conn.buf, eof) {
                Ok(Step::Data(b)) => return Poll::Ready(Some(Ok(b))),
                Ok(Step::End) => return Poll::Ready(None),
                Ok(Step::More) => {}
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    /// The connection, when the body ended cleanly and it may carry another
    /// exchange: HTTP/1.1 without `close`, nothing read beyond the body.
    pub fn take_conn(&mut self) -> Option<Conn> {
        let reusable = self.keep && self.decode.is_done();
        let conn = self.conn.take()?;
        (reusable && conn.buf.is_empty()).then_some(conn)
    }
}

/// Parses a whole upstream response held in `bytes`, the second part
/// arriving after `split` bytes and then the connection closing: its
/// status and body length. For the fuzz target `upstream_h1`
/// (`src/fuzzing.rs`), which drives the same parser and decoder the proxy
/// uses on a socket.
#[doc(hidden)]
pub fn decode_buffered(bytes: &[u8], split: usize, is_head: bool) -> Result<(u16, u64), H1Error> {
    let split = split.min(bytes.len());
    let mut buf = BytesMut::from(&bytes[..split]);
    let mut rest = Some(&bytes[split..]);
    let (head, len) = loop {
        match parse_head(&buf)? {
            Some(found) => break found,
            None if buf.len() > MAX_HEAD_BYTES => return Err(H1Error::Invalid("head too large")),
            None => match rest.take() {
                Some(more) => buf.extend_from_slice(more),
                None => return Err(H1Error::Closed),
            },
        }
    };
    buf.advance(len);
    let (mut decode, _keep) = framing(is_head, &head)?;
    let mut body = 0u64;
    loop {
        let eof = rest.is_none();
        match decode.step(&mut buf, eof)? {
            Step::Data(b) => {
                assert!(!b.is_empty(), "the decoder produced an empty chunk");
                body += b.len() as u64;
            }
            Step::End => return Ok((head.status.as_u16(), body)),
            Step::More => match rest.take() {
                Some(more) => buf.extend_from_slice(more),
                None => unreachable!("the decoder asked for more after the close"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        let (h, len) = parse_head(raw.as_bytes()).unwrap().expect("complete head");
        assert_eq!(len, raw.len());
        h
    }

    fn frame(is_head: bool, raw: &str) -> Result<(Decode, bool), H1Error> {
        framing(is_head, &head(raw))
    }

    /// Decodes `wire` fed `step` bytes at a time; the body, and what is
    /// left in the buffer at the end.
    fn decode(mut d: Decode, wire: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), H1Error> {
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match d.step(&mut buf, fed == wire.len())? {
                Step::Data(b) => body.extend_from_slice(&b),
                Step::End => return Ok((body, buf.to_vec())),
                Step::More => {
                    let n = step.min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    const CHUNKED: &[u8] = b"5\r\nhello\r\n6;name=value\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";

    #[test]
    fn chunked_bodies_decode_whole_and_in_pieces() {
        for step in [1, 2, 3, 7, CHUNKED.len()] {
            let (body, rest) = decode(Decode::Chunked(Chunk::Size), CHUNKED, step).unwrap();
            assert_eq!(body, b"hello world", "step {step}");
            assert!(rest.is_empty());
        }
        // Bytes after the last chunk stay in the buffer (so the connection
        // is not reused).
        let mut wire = CHUNKED.to_vec();
        wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let (_, rest) = decode(Decode::Chunked(Chunk::Size), &wire, wire.len()).unwrap();
        assert_eq!(rest, b"HTTP/1.1 200 OK\r\n");
    }

    #[test]
    fn chunked_framing_errors_are_refused() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXY0\r\n\r\n",
            b"g\r\nhello\r\n0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhel",
            b"0\r\nX: 1\r\n",
        ] {
            assert!(
                decode(Decode::Chunked(Chunk::Size), bad, bad.len()).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b'a'; MAX_LINE + 1];
        assert!(decode(Decode::Chunked(Chunk::Size), &long, long.len()).is_err());
    }

    #[test]
    fn length_and_close_delimited_bodies() {
        let (body, rest) = decode(Decode::Length(5), b"helloEXTRA", 10).unwrap();
        assert_eq!(
            (body.as_slice(), rest.as_slice()),
            (&b"hello"[..], &b"EXTRA"[..])
        );
        assert!(matches!(
            decode(Decode::Length(5), b"hel", 3),
            Err(H1Error::Closed)
        ));
        let (body, _) = decode(Decode::Close, b"until the end", 4).unwrap();
        assert_eq!(body, b"until the end");
        let big = vec![7u8; 3 * COPY_BELOW];
        let (body, _) = decode(Decode::Length(big.len() as u64), &big, big.len()).unwrap();
        assert_eq!(body, big);
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let ok = "HTTP/1.1 200 OK\r\n";
        assert_eq!(
            frame(false, &format!("{ok}Content-Length: 5\r\n\r\n")).unwrap(),
            (Decode::Length(5), true)
        );
        assert_eq!(
            frame(
                false,
                &format!("{ok}Content-Length: 5, 5\r\nContent-Length: 5\r\n\r\n")
            )
            .unwrap(),
            (Decode::Length(5), true)
        );
        assert_eq!(
            frame(false, &format!("{ok}Transfer-Encoding: Chunked\r\n\r\n")).unwrap(),
            (Decode::Chunked(Chunk::Size), true)
        );
        // Neither header: read to close, never reused.
        assert_eq!(
            frame(false, &format!("{ok}\r\n")).unwrap(),
            (Decode::Close, false)
        );
        // No body, whatever the headers say.
        assert_eq!(
            frame(true, &format!("{ok}Content-Length: 9\r\n\r\n")).unwrap(),
            (Decode::Length(0), true)
        );
        for status in ["204 No Content", "304 Not Modified"] {
            assert_eq!(
                frame(
                    false,
                    &format!("HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n")
                )
                .unwrap(),
                (Decode::Length(0), true)
            );
        }
        // Not reused: HTTP/1.0, or `Connection: close`.
        assert!(
            !frame(false, "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n")
                .unwrap()
                .1
        );
        assert!(
            !frame(
                false,
                &format!("{ok}Connection: keep-alive, Close\r\nContent-Length: 1\r\n\r\n")
            )
            .unwrap()
            .1
        );
        for bad in [
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: 5, 6\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: 0x10\r\n",
            "Content-Length: \r\n",
            "Content-Length: 99999999999999999999\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked, chunked\r\n",
            "Transfer-Encoding: identity\r\n",
        ] {
            assert!(frame(false, &format!("{ok}{bad}\r\n")).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn heads_parse_strictly() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nX: 1\r\n")
            .unwrap()
            .is_none());
        let h = head("HTTP/1.1 404 Not Found\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\n");
        assert_eq!(h.status, StatusCode::NOT_FOUND);
        assert_eq!(h.headers.get_all(header::SET_COOKIE).iter().count(), 2);
        for bad in [
            &b"HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert!(parse_head(format!("HTTP/1.1 200 OK\r\n{many}\r\n").as_bytes()).is_err());
    }
    #[test]
    fn values_are_the_same_from_a_shared_head_and_from_copies() {
        let fields = "Server: x\r\nSet-Cookie: a=1; Path=/\r\nEmpty:\r\nX-Obs: caf\u{e9}\r\n";
        let small = format!("HTTP/1.1 200 OK\r\n{fields}\r\n");
        let pad = "p".repeat(SHARE_HEAD_BELOW);
        let large = format!("HTTP/1.1 200 OK\r\n{fields}X-Pad: {pad}\r\n\r\n");
        assert!(small.len() <= SHARE_HEAD_BELOW && large.len() > SHARE_HEAD_BELOW);
        let (small, mut large) = (head(&small).headers, head(&large).headers);
        assert_eq!(large.remove("x-pad").unwrap().len(), pad.len());
        assert_eq!(small, large);
        assert_eq!(small["set-cookie"], "a=1; Path=/");
        assert_eq!(small["empty"], "");
        assert_eq!(small["x-obs"].as_bytes(), "caf\u{e9}".as_bytes());
    }
}
