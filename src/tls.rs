//! TLS client settings for `mqtts://` brokers and `https://` servers: rustls with the ring
//! provider, one for the whole process.
//!
//! Roots of trust: `tls.ca_file`, or else the system bundle at the first of
//! [`SYSTEM_BUNDLES`] that exists. No root store is compiled in: a device's trust belongs to
//! its image, and Mozilla's list would add ~250 KiB. `insecure` accepts any server
//! certificate (a test bench with a self-signed broker); it is logged as a warning each time
//! a connection is set up with it.

use crate::config::Tls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Where Linux distributions keep their CA bundle (Debian/Alpine/Buildroot, Fedora/RHEL,
/// OpenWrt/others).
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The process's one crypto provider (ring), installed as the default on first use so that
/// no library picks another.
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| {
        let p = Arc::new(rustls::crypto::ring::default_provider());
        let _ = CryptoProvider::install_default(p.as_ref().clone());
        p
    })
    .clone()
}

fn ca_path(t: &Tls) -> Result<&Path, String> {
    match &t.ca_file {
        Some(p) => Ok(p),
        None => SYSTEM_BUNDLES
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .ok_or_else(|| {
                format!(
                    "no CA bundle at {}: set tls.ca_file",
                    SYSTEM_BUNDLES.join(", ")
                )
            }),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The rustls client config `t` describes (files read now: call it when connecting, so a
/// renewed certificate is picked up by the next connection).
pub fn client_config(t: &Tls) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if t.insecure {
        log::warn!("tls.insecure: the server's certificate is NOT checked");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        let path = ca_path(t)?;
        let (good, _bad) = roots.add_parsable_certificates(certs(path)?);
        if good == 0 {
            return Err(format!(
                "{}: no usable CA certificate in it",
                path.display()
            ));
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&t.client_cert, &t.client_key) {
        (Some(c), Some(k)) => {
            let key =
                PrivateKeyDer::from_pem_file(k).map_err(|e| format!("{}: {e}", k.display()))?;
            builder
                .with_client_auth_cert(certs(c)?, key)
                .map_err(|e| format!("{}: {e}", c.display()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// `insecure`: every certificate passes; signatures are still checked so the handshake is
/// well-formed.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
