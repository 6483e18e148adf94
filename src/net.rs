//! The byte streams under both sides of the proxy: a wrapper that sends a
//! lone buffer with `send(2)` rather than `writev(2)`.
//!
//! rustls hands its records to the socket as a vectored write, and hyper's
//! HTTP/1 client does the same with a request head; nearly always that is a
//! single buffer. Linux's `writev` goes through the VFS layer and copies
//! and checks an iovec array first, which costs the proxy about 1–2 % of
//! its CPU per request in the keep-alive benchmark (`docs/performance.md`);
//! a socket `send`, which tokio's plain write is, does not. Several buffers
//! still go out in one `writev`.
//!
//! Also [`poll_write_all`], for the connection guards' own answers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner` with lone-buffer vectored writes sent as plain writes.
#[derive(Debug)]
pub struct SendLone<T>(pub T);

impl<T: AsyncRead + Unpin> AsyncRead for SendLone<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SendLone<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        match (filled.next(), filled.next()) {
            (Some(only), None) => Pin::new(&mut self.0).poll_write(cx, only),
            (None, _) => Poll::Ready(Ok(0)),
            (Some(_), Some(_)) => Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Writes what is left of `bytes` (from `*written`, which it advances) and
/// flushes: how a connection guard sends the one answer it gives in the
/// server's place (`server::h1guard`'s 414, `server::h2guard`'s GOAWAY).
pub fn poll_write_all<W: AsyncWrite + Unpin>(
    w: &mut W,
    cx: &mut Context<'_>,
    bytes: &[u8],
    written: &mut usize,
) -> Poll<io::Result<()>> {
    while *written < bytes.len() {
        let n = std::task::ready!(Pin::new(&mut *w).poll_write(cx, &bytes[*written..]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        *written += n;
    }
    Pin::new(w).poll_flush(cx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Lone, several and empty buffer lists all arrive whole and in order.
    #[tokio::test]
    async fn vectored_writes_arrive_whole() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut w = SendLone(client);
        assert!(w.is_write_vectored());
        let lists: [&[&[u8]]; 4] = [
            &[b"", b"alone", b""],
            &[b"head;", b"", b"body;"],
            &[b"", b""],
            &[b"x"],
        ];
        let mut sent = Vec::new();
        for list in lists {
            let slices: Vec<_> = list.iter().map(|b| io::IoSlice::new(b)).collect();
            let total: usize = list.iter().map(|b| b.len()).sum();
            let n = w.write_vectored(&slices).await.unwrap();
            // Loopback takes these few bytes in one call.
            assert_eq!(n, total);
            list.iter().for_each(|b| sent.extend_from_slice(b));
        }
        w.shutdown().await.unwrap();
        let mut got = Vec::new();
        SendLone(server).read_to_end(&mut got).await.unwrap();
        assert_eq!(got, sent);
        assert_eq!(got, b"alonehead;body;x");
    }
}
