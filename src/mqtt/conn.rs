//! The broker connection: plain TCP, or TLS over it (`mqtts://`), both on async-io.

use crate::config::{Endpoint, Tls};
use smol::io::{AsyncRead, AsyncWrite};
use smol::Async;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll};

/// One connection to a broker.
#[derive(Debug)]
pub enum Conn {
    /// `mqtt://`.
    Plain(Async<TcpStream>),
    /// `mqtts://` (boxed: rustls's connection state is ~1 KiB).
    #[cfg(feature = "tls")]
    Tls(Box<futures_rustls::client::TlsStream<Async<TcpStream>>>),
}

impl Conn {
    /// Connects to `addr`, then (for `mqtts://`) does the TLS handshake for `e.host`.
    pub async fn open(addr: SocketAddr, e: &Endpoint, _tls: &Tls) -> io::Result<Conn> {
        // async-io's connect, not async-net's: that one is generic over name resolution
        // and links the blocking thread pool in, which a resolved address does not need.
        let stream = Async::<TcpStream>::connect(addr).await?;
        stream.get_ref().set_nodelay(true).ok();
        if !e.tls {
            return Ok(Conn::Plain(stream));
        }
        #[cfg(feature = "tls")]
        {
            let config = crate::tls::client_config(_tls).map_err(io::Error::other)?;
            let name = rustls::pki_types::ServerName::try_from(e.host.clone())
                .map_err(|_| io::Error::other(format!("{:?} is not a TLS server name", e.host)))?;
            let tls = futures_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await?;
            Ok(Conn::Tls(Box::new(tls)))
        }
        #[cfg(not(feature = "tls"))]
        Err(io::Error::other("mqtts:// needs the tls feature"))
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
