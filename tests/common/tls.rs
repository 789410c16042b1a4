//! TLS for the tests: a CA, server and client certificates made with rcgen, and a TLS front
//! (a real rustls server) that forwards the decrypted bytes to a plain backend on loopback —
//! the test broker or HTTP server — so the same peers serve `mqtts://` and `https://`.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// PEM files in a directory.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here: trusting only it must fail.
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let pem = p.self_signed(&key).unwrap().pem();
    (p, key, pem)
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let (ca_params, ca_key, ca_pem) = ca("tailbeat test CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |sans: Vec<String>, cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) =
            leaf(vec!["localhost".into(), "127.0.0.1".into()], "test server");
        let (client_cert, client_key) = leaf(vec!["gateway-7".into()], "gateway-7");
        let (_, _, other) = ca("some other CA");
        let w = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Pki {
            ca: w("ca.pem", &ca_pem),
            server_cert: w("server.pem", &server_cert),
            server_key: w("server.key", &server_key),
            client_cert: w("client.pem", &client_cert),
            client_key: w("client.key", &client_key),
            other_ca: w("other-ca.pem", &other),
        }
    }
}

/// A TLS listener in front of `127.0.0.1:backend`. With `require_client_cert`, clients must
/// present a certificate signed by the test CA.
pub struct TlsFront {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl TlsFront {
    pub fn start(pki: &Pki, backend: u16, require_client_cert: bool) -> TlsFront {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.server_cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
        let builder = rustls::ServerConfig::builder();
        let config = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(&pki.ca).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            let v = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .unwrap();
            builder.with_client_cert_verifier(v)
        } else {
            builder.with_no_client_auth()
        }
        .with_single_cert(certs, key)
        .unwrap();
        let config = Arc::new(config);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = c else { continue };
                let (config, s) = (config.clone(), s.clone());
                std::thread::spawn(move || pump(c, backend, config, s));
            }
        });
        TlsFront { port, stop }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Moves bytes between the TLS client and the backend until either side closes.
fn pump(client: TcpStream, backend: u16, config: Arc<rustls::ServerConfig>, stop: Arc<AtomicBool>) {
    let mut conn = rustls::ServerConnection::new(config).unwrap();
    let mut tcp = client;
    tcp.set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let Ok(mut back) = TcpStream::connect(("127.0.0.1", backend)) else {
        return;
    };
    back.set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let mut buf = vec![0u8; 64 << 10];
    while !stop.load(Ordering::SeqCst) {
        // Client → TLS → backend.
        match conn.read_tls(&mut tcp) {
            Ok(0) => return,
            Ok(_) => {
                if conn.process_new_packets().is_err() {
                    let _ = conn.write_tls(&mut tcp);
                    return;
                }
                loop {
                    match conn.reader().read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            if back.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => return,
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        // Backend → TLS → client.
        if !conn.is_handshaking() {
            match back.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if conn.writer().write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
        while conn.wants_write() {
            tcp.set_read_timeout(None).ok();
            if conn.write_tls(&mut tcp).is_err() {
                return;
            }
            tcp.set_read_timeout(Some(Duration::from_millis(2))).ok();
        }
    }
}
