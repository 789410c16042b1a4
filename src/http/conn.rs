//! One connection to an HTTP server: plain TCP, or TLS over it (`https://`), both on
//! async-io, so a request waits on the reactor and never blocks the pipeline thread.

use smol::io::{AsyncRead, AsyncWrite};
use smol::Async;
use std::io;
use std::net::TcpStream;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A connection.
#[derive(Debug)]
pub(super) enum Conn {
    /// `http://`.
    Plain(Async<TcpStream>),
    /// `https://` (boxed: rustls's connection state is ~1 KiB).
    #[cfg(feature = "tls")]
    Tls(Box<futures_rustls::client::TlsStream<Async<TcpStream>>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s.get_ref(),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => s.get_ref().0.get_ref(),
        }
    }

    /// An idle connection is fit for another request only if nothing has arrived on it: a
    /// byte would be more than the last answer announced (or a TLS alert), and an end means
    /// the server closed it. A look at the socket (no wait: it is non-blocking) catches both
    /// before a request is spent on it; the race that remains, a close in flight, is what the
    /// one retry in `Client::post` is for.
    pub(super) fn idle_and_open(&self) -> bool {
        matches!(self.tcp().peek(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_close(cx),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
