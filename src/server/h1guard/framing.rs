//! The request-framing tracker of [`super`]: fed every byte hyper reads,
//! in order, it follows the requests (request line, header lines, body by
//! `Content-Length` or chunked) and says where a request is refused, or
//! stops judging for good. Pure: no IO, no allocation.

/// The largest chunk size accepted: 2^52 - 1 (13 hex digits).
pub const MAX_CHUNK_SIZE: u64 = (1 << 52) - 1;
/// The first bytes of a header line split across reads that are kept.
pub const LINE_KEPT: usize = 48;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No line end within the header limit: 414.
    TargetTooLong,
    /// A chunk size above [`MAX_CHUNK_SIZE`] (2^52 or more): 400.
    ChunkTooLarge,
}

impl Verdict {
    /// The `reason` label of `cloakroom_connections_refused_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Verdict::TargetTooLong => "h1_target_too_long",
            Verdict::ChunkTooLarge => "h1_chunk_size",
        }
    }
}

/// Where the client's byte stream is in its requests. The chunked states
/// are hyper's (`proto/h1/decode.rs`), so that any byte hyper refuses
/// makes the guard stop judging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request: empty lines (`blank` bytes) are skipped, as hyper does.
    Idle {
        blank: usize,
    },
    /// In the request line: `len` bytes of the head so far; `connect`, how
    /// much of `CONNECT ` the line starts with (`NOT_CONNECT` once not).
    Line {
        len: usize,
        connect: u8,
    },
    /// In the header fields: `len` bytes of the current line so far.
    Field {
        len: usize,
    },
    /// A `Content-Length` body: bytes left.
    Body(u64),
    /// A chunk size: its value and whether a digit was seen.
    Size {
        size: u64,
        digit: bool,
    },
    SizeLws,
    Extension,
    SizeLf,
    /// Chunk data: bytes left.
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: the end of the trailer section or a trailer.
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
    /// Not judging any more.
    Off,
}

const NOT_CONNECT: u8 = u8::MAX;
const CONNECT: &[u8] = b"CONNECT ";

/// The framing tracker: fed every byte hyper reads, in order.
#[derive(Debug)]
pub struct Framing {
    state: State,
    max_head: usize,
    /// Request heads seen complete.
    heads: usize,
    /// The current head's `Content-Length`, and whether it is chunked.
    length: Option<u64>,
    chunked: bool,
    /// The chunk size line's size, kept from `Size` to `SizeLf`.
    size: u64,
    /// The start of a header line split across reads.
    kept: [u8; LINE_KEPT],
}

impl Framing {
    /// A tracker for a connection whose heads may be `max_head` bytes.
    pub fn new(max_head: usize) -> Self {
        Framing {
            state: State::Idle { blank: 0 },
            max_head: max_head.max(2),
            heads: 0,
            length: None,
            chunked: false,
            size: 0,
            kept: [0; LINE_KEPT],
        }
    }

    /// Request heads seen complete (and passed on).
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Whether the tracker has stopped judging.
    pub fn is_off(&self) -> bool {
        self.state == State::Off
    }

    /// Follows `bytes`. `Some((n, verdict))`: the request is refused at
    /// `bytes[n]`; only `bytes[..n]` may be passed on, and the tracker
    /// must not be fed again.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<(usize, Verdict)> {
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            i += match self.state {
                State::Off => return None,
                State::Idle { blank } => self.idle(rest, blank),
                State::Line { len, connect } => match self.line(rest, len, connect) {
                    Ok(n) => n,
                    Err(at) => return Some((i + at, Verdict::TargetTooLong)),
                },
                State::Field { len } => self.field(rest, len),
                State::Body(left) | State::Data(left) => self.skip(rest.len(), left),
                State::Trailer => match memchr::memchr(b'\r', rest) {
                    Some(p) => {
                        self.state = State::TrailerLf;
                        p + 1
                    }
                    None => rest.len(),
                },
                State::Extension => match memchr::memchr2(b'\r', b'\n', rest) {
                    Some(p) => {
                        self.state = match rest[p] {
                            b'\r' => State::SizeLf,
                            _ => State::Off,
                        };
                        p + 1
                    }
                    None => rest.len(),
                },
                _ => {
                    if self.chunk_byte(rest[0]) {
                        return Some((i, Verdict::ChunkTooLarge));
                    }
                    1
                }
            };
        }
        None
    }

    fn idle(&mut self, rest: &[u8], blank: usize) -> usize {
        let n = rest
            .iter()
            .position(|b| !matches!(b, b'\r' | b'\n'))
            .unwrap_or(rest.len());
        let blank = blank + n;
        self.state = if blank >= self.max_head {
            State::Off
        } else if n < rest.len() {
            self.length = None;
            self.chunked = false;
            State::Line {
                len: blank,
                connect: 0,
            }
        } else {
            State::Idle { blank }
        };
        n
    }

    /// The bytes of the request line consumed, or where it is refused.
    fn line(&mut self, rest: &[u8], len: usize, mut connect: u8) -> Result<usize, usize> {
        // Every line byte before `rest` matched so far, or matching stopped.
        let start = connect;
        while usize::from(connect) < CONNECT.len() {
            let Some(&b) = rest.get(usize::from(connect - start)) else {
                break;
            };
            connect = if b == CONNECT[usize::from(connect)] {
                connect + 1
            } else {
                NOT_CONNECT
            };
        }
        // The line must end within the head's first `max_head` bytes.
        let window = rest.len().min(self.max_head - len);
        match memchr::memchr(b'\n', &rest[..window]) {
            Some(p) => {
                self.state = match usize::from(connect) == CONNECT.len() {
                    true => State::Off,
                    false => State::Field { len: 0 },
                };
                Ok(p + 1)
            }
            // hyper gets `max_head - 1` bytes of this head, short of its
            // own limit, and never the rest.
            None if len + rest.len() >= self.max_head => Err(self.max_head - 1 - len),
            None => {
                self.state = State::Line {
                    len: len + rest.len(),
                    connect,
                };
                Ok(rest.len())
            }
        }
    }

    fn field(&mut self, rest: &[u8], len: usize) -> usize {
        let Some(p) = memchr::memchr(b'\n', rest) else {
            self.keep(len, rest);
            self.state = State::Field {
                len: len + rest.len(),
            };
            return rest.len();
        };
        if len == 0 {
            // Judged as if split: only the first `LINE_KEPT` bytes count.
            self.field_line(&rest[..p.min(LINE_KEPT)], p > LINE_KEPT);
        } else {
            self.keep(len, &rest[..p]);
            let whole = len + p;
            let kept = self.kept;
            self.field_line(&kept[..whole.min(LINE_KEPT)], whole > LINE_KEPT);
        }
        p + 1
    }

    fn keep(&mut self, len: usize, part: &[u8]) {
        if len < LINE_KEPT {
            let n = part.len().min(LINE_KEPT - len);
            self.kept[len..len + n].copy_from_slice(&part[..n]);
        }
    }

    /// One header line (LF excluded); `cut` when only its start was kept.
    fn field_line(&mut self, line: &[u8], cut: bool) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let first = match line.first() {
            None => return self.head_end(),
            // obs-fold: hyper refuses it; not this guard's to judge.
            Some(b' ' | b'\t') => return self.state = State::Off,
            Some(b) => b | 0x20,
        };
        let name: &[u8] = match first {
            b'c' => b"content-length",
            b't' => b"transfer-encoding",
            b'u' => b"upgrade",
            b'e' => b"expect",
            _ => return self.state = State::Field { len: 0 },
        };
        let named = line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name);
        self.state = State::Field { len: 0 };
        if !named {
            return;
        }
        if cut {
            return self.state = State::Off;
        }
        let value = trim(&line[name.len() + 1..]);
        match first {
            b'c' => match (self.length, self.chunked, content_length(value)) {
                (None, false, Some(n)) => self.length = Some(n),
                _ => self.state = State::Off,
            },
            b't' => match self.length.is_none()
                && !self.chunked
                && value.eq_ignore_ascii_case(b"chunked")
            {
                true => self.chunked = true,
                false => self.state = State::Off,
            },
            _ => self.state = State::Off,
        }
    }

    fn head_end(&mut self) {
        self.heads += 1;
        self.state = match (self.chunked, self.length) {
            (true, _) => State::Size {
                size: 0,
                digit: false,
            },
            (false, Some(n)) if n > 0 => State::Body(n),
            _ => State::Idle { blank: 0 },
        };
    }

    fn skip(&mut self, available: usize, left: u64) -> usize {
        let n = usize::try_from(left).map_or(available, |l| l.min(available));
        let left = left - n as u64;
        if left == 0 {
            self.state = match self.state {
                State::Data(_) => State::DataCr,
                _ => State::Idle { blank: 0 },
            };
        } else if let State::Body(l) | State::Data(l) = &mut self.state {
            *l = left;
        }
        n
    }

    /// One byte of chunk framing outside data, extensions and trailers;
    /// `true` when it makes the size too large.
    fn chunk_byte(&mut self, b: u8) -> bool {
        self.state = match (self.state, b) {
            (State::Size { size, digit }, _) => match hex(b) {
                // Below 2^52, times 16: no overflow.
                Some(d) => {
                    let size = size * 16 + u64::from(d);
                    if size > MAX_CHUNK_SIZE {
                        return true;
                    }
                    State::Size { size, digit: true }
                }
                None if !digit => State::Off,
                None => {
                    self.size = size;
                    match b {
                        b' ' | b'\t' => State::SizeLws,
                        b';' => State::Extension,
                        b'\r' => State::SizeLf,
                        _ => State::Off,
                    }
                }
            },
            (State::SizeLws, b' ' | b'\t') => State::SizeLws,
            (State::SizeLws, b';') => State::Extension,
            (State::SizeLws, b'\r') => State::SizeLf,
            (State::SizeLf, b'\n') if self.size == 0 => State::EndCr,
            (State::SizeLf, b'\n') => State::Data(self.size),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size {
                size: 0,
                digit: false,
            },
            (State::EndCr, b'\r') => State::EndLf,
            (State::EndCr, _) => State::Trailer,
            (State::TrailerLf, b'\n') => State::EndCr,
            (State::EndLf, b'\n') => State::Idle { blank: 0 },
            _ => State::Off,
        };
        false
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

/// A plain decimal `Content-Length`; anything else (a list, a sign) is
/// hyper's to judge.
fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;

    /// The verdict and its offset in the whole stream when `bytes` arrive
    /// in reads of the given lengths (the last read takes the rest).
    fn run(bytes: &[u8], cuts: &[usize]) -> (Option<(usize, Verdict)>, Framing) {
        let mut f = Framing::new(MAX);
        let mut at = 0;
        let mut parts: Vec<&[u8]> = Vec::new();
        for &c in cuts {
            let c = c.min(bytes.len());
            if c > at {
                parts.push(&bytes[at..c]);
                at = c;
            }
        }
        parts.push(&bytes[at..]);
        let mut offset = 0;
        for part in parts {
            if let Some((n, v)) = f.feed(part) {
                return (Some((offset + n, v)), f);
            }
            offset += part.len();
        }
        (None, f)
    }

    /// The verdict is the same whatever the reads: every single split,
    /// every pair of splits close together, and byte by byte.
    fn same_for_every_split(bytes: &[u8]) -> (Option<(usize, Verdict)>, usize, bool) {
        let (whole, f) = run(bytes, &[]);
        let expect = (whole, f.heads(), f.is_off());
        for a in 0..=bytes.len() {
            for b in a..(a + 4).min(bytes.len() + 1) {
                let (v, f) = run(bytes, &[a, b]);
                assert_eq!((v, f.heads(), f.is_off()), expect, "split at {a}, {b}");
            }
        }
        let ones: Vec<usize> = (1..bytes.len()).collect();
        let (v, f) = run(bytes, &ones);
        assert_eq!((v, f.heads(), f.is_off()), expect, "byte by byte");
        expect
    }

    fn pipelined() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        // Empty lines before a request are skipped.
        s.extend_from_slice(b"\r\n");
        s.extend_from_slice(
            b"POST /cl HTTP/1.1\r\nHost: a\r\ncontent-length: 11\r\n\r\nhello\r\n\nGET",
        );
        s.extend_from_slice(
            b"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n\
              5;name=value;x=\"q\"\r\nhello\r\n\
              00A \t;ext\r\n0123456789\r\n\
              0;last\r\nX-Trailer: 1\r\nX-Other: two\r\n\r\n",
        );
        s.extend_from_slice(b"POST /empty HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        s.extend_from_slice(b"POST /bare HTTP/1.1\nHost: a\nContent-Length: 3\n\nabc");
        s.extend_from_slice(
            b"POST /c2 HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\
              Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
        );
        s
    }

    #[test]
    fn s3_pipelined_requests_are_followed_across_any_split() {
        let s = pipelined();
        assert_eq!(same_for_every_split(&s), (None, 6, false));
    }

    #[test]
    fn s3_a_request_line_without_an_end_within_the_limit_is_414() {
        let mut s = pipelined();
        let start = s.len();
        s.extend_from_slice(b"GET /");
        s.extend(std::iter::repeat_n(b'a', 2 * MAX));
        let (v, heads, _) = same_for_every_split(&s);
        // hyper is given `MAX - 1` bytes of the head: short of its 431.
        assert_eq!(v, Some((start + MAX - 1, Verdict::TargetTooLong)));
        assert_eq!(heads, 6);

        // A line that ends at the limit's last byte passes (the head as a
        // whole is hyper's to judge: 431).
        let mut line = b"GET /".to_vec();
        line.resize(MAX - 1, b'a');
        line.extend_from_slice(b"\nHost: a\r\n\r\n");
        assert_eq!(same_for_every_split(&line), (None, 1, false));
        line.insert(5, b'a');
        assert_eq!(
            same_for_every_split(&line).0,
            Some((MAX - 1, Verdict::TargetTooLong))
        );
    }

    #[test]
    fn s3_chunk_sizes_no_body_can_have_are_400() {
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut s = pipelined();
        s.extend_from_slice(head);
        let at = s.len();
        s.extend_from_slice(b"ffffffffffffffff\r\n");
        let (v, heads, _) = same_for_every_split(&s);
        // Refused at the 14th digit, the first that makes it 2^52 or more.
        assert_eq!(v, Some((at + 13, Verdict::ChunkTooLarge)));
        assert_eq!(heads, 7);

        // The largest allowed size, with leading zeros, passes; one more
        // is refused.
        let mut s = head.to_vec();
        s.extend_from_slice(b"0000fffffffffffff;a=b\r\nxyz");
        assert_eq!(same_for_every_split(&s), (None, 1, false));
        let mut s = head.to_vec();
        s.extend_from_slice(b"10000000000000\r\n");
        assert_eq!(
            same_for_every_split(&s).0,
            Some((head.len() + 13, Verdict::ChunkTooLarge))
        );
    }

    #[test]
    fn s3_what_the_guard_cannot_be_sure_of_is_left_to_hyper() {
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
            // A relevant line too long to keep the start of (when split).
            b"POST / HTTP/1.1\r\nTransfer-Encoding:                                                chunked\r\n\r\n",
            // Chunk framing hyper refuses.
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a\nx\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\r",
        ];
        for case in cases {
            assert!(
                same_for_every_split(case).2,
                "{}",
                String::from_utf8_lossy(case)
            );
            // Whatever follows, nothing is refused any more.
            let mut s = case.to_vec();
            s.extend_from_slice(b"ffffffffffffffff\r\nGET /");
            s.extend(std::iter::repeat_n(b'a', 2 * MAX));
            let mut f = Framing::new(MAX);
            assert_eq!(f.feed(&s), None, "{}", String::from_utf8_lossy(case));
            assert!(f.is_off(), "{}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn s3_the_guard_is_off_for_the_rest_of_the_connection_after_an_upgrade() {
        let mut s = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n".to_vec();
        s.extend(std::iter::repeat_n(b'\x81', 4 * MAX));
        assert_eq!(same_for_every_split(&s[..200]).0, None);
        let mut f = Framing::new(MAX);
        assert_eq!(f.feed(&s), None);
        assert!(f.is_off());
    }
}
