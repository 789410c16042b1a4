//! The broker connection: plain TCP, or TLS over it (`mqtts://`), both on async-io.

use crate::config::{Endpoint, Tls};
use smol::Async;
use std::io;
use std::net::{SocketAddr, TcpStream};

/// One connection to a broker: `mqtt://` plain, `mqtts://` with TLS.
pub(crate) use crate::net::Stream as Conn;

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
