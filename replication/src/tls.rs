//! Mutual TLS: one development CA signs a certificate per party (`control`, each cell id,
//! `router`); every link presents its certificate and checks the other's against the CA.
//!
//! Files in a TLS directory: `ca.pem`, `ca.key` (kept so more parties can be added), and
//! `<name>.pem` + `<name>.key` per party. Each party's certificate names it as a DNS name
//! (`uk`, `router`...) and is valid for `localhost` and `127.0.0.1`, since everything here runs
//! on loopback.

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("generate certificates: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File { path: path.to_owned(), message: message.to_string() }
}

/// Creates a CA and a certificate for each of `names` under `dir` (created if missing). Existing
/// files are left alone, so running it again adds only what is missing.
pub fn generate(dir: &Path, names: &[String]) -> Result<Vec<PathBuf>, TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    let gen = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let (ca_pem, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let ca_key_pair = if ca_key.exists() {
        let pem = std::fs::read_to_string(&ca_key).map_err(|e| file_error(&ca_key, e))?;
        KeyPair::from_pem(&pem).map_err(gen)?
    } else {
        KeyPair::generate().map_err(gen)?
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    ca_params.distinguished_name.push(DnType::CommonName, "casino platform development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut written = Vec::new();
    if !ca_pem.exists() {
        let ca_cert = ca_params.clone().self_signed(&ca_key_pair).map_err(gen)?;
        write(&ca_pem, ca_cert.pem().as_bytes())?;
        write(&ca_key, ca_key_pair.serialize_pem().as_bytes())?;
        written.extend([ca_pem.clone(), ca_key.clone()]);
    }
    let issuer = Issuer::from_params(&ca_params, &ca_key_pair);
    for name in names {
        let (pem, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        if pem.exists() && key.exists() {
            continue;
        }
        let key_pair = KeyPair::generate().map_err(gen)?;
        let mut params = CertificateParams::new(vec![name.clone(), "localhost".to_owned()]).map_err(gen)?;
        params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.distinguished_name.push(DnType::CommonName, name.as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key_pair, &issuer).map_err(gen)?;
        write(&pem, cert.pem().as_bytes())?;
        write(&key, key_pair.serialize_pem().as_bytes())?;
        written.extend([pem, key]);
    }
    Ok(written)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if path.extension().is_some_and(|e| e == "key") { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| file_error(path, e))?;
    file.write_all(bytes).map_err(|e| file_error(path, e))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

fn roots(dir: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(&dir.join("ca.pem"))? {
        roots.add(cert).map_err(|e| TlsError::Config(e.to_string()))?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server that presents `name`'s certificate and accepts only clients with a certificate
/// from the same CA.
pub fn server_config(dir: &Path, name: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(dir)?), provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&dir.join(format!("{name}.pem")))?, key(&dir.join(format!("{name}.key")))?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A client that presents `name`'s certificate and accepts only a server whose certificate,
/// from the same CA, names `peer` (a cell id, `control`), whatever host the URL says: every
/// party here is valid for 127.0.0.1, so the address alone cannot tell one cell from another.
pub fn client_config(dir: &Path, name: &str, peer: &str) -> Result<ClientConfig, TlsError> {
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots(dir)?), provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let expected =
        rustls::pki_types::ServerName::try_from(peer.to_owned()).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(dir)?)
        .with_client_auth_cert(certs(&dir.join(format!("{name}.pem")))?, key(&dir.join(format!("{name}.key")))?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.dangerous().set_certificate_verifier(Arc::new(NamedPeer { webpki, expected }));
    Ok(config)
}

/// A client that presents `name`'s certificate and checks the server's as WebPKI does, against
/// the URL's host: for an outside party calling back a URL it was given (a vendor's webhook),
/// which knows the address, not the platform's names.
pub fn client_config_by_url_host(dir: &Path, name: &str) -> Result<ClientConfig, TlsError> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(dir)?)
        .with_client_auth_cert(certs(&dir.join(format!("{name}.pem")))?, key(&dir.join(format!("{name}.key")))?)
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// Verifies a server certificate as WebPKI does, against the name we expect rather than the URL's.
#[derive(Debug)]
struct NamedPeer {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    expected: rustls::pki_types::ServerName<'static>,
}

impl rustls::client::danger::ServerCertVerifier for NamedPeer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _url_host: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.webpki.verify_server_cert(end_entity, intermediates, &self.expected, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// ALPN of the control-plane sync protocol; both ends insist on it, so nothing else can speak to
/// the sync port by accident.
pub const SYNC_ALPN: &[u8] = b"casino-sync/1";

/// Transport limits of sync connections, shared by both ends.
#[derive(Debug, Clone, Copy)]
pub struct QuicTimeouts {
    /// A connection with no packet from the peer for this long is dead. Short enough that a cell
    /// notices a dead control plane (and reports `STALE`) quickly, long enough to ride out loss.
    pub idle: std::time::Duration,
    /// Ping this often so an idle but healthy connection never reaches `idle`.
    pub keep_alive: std::time::Duration,
}

impl Default for QuicTimeouts {
    fn default() -> Self {
        QuicTimeouts { idle: std::time::Duration::from_secs(10), keep_alive: std::time::Duration::from_secs(2) }
    }
}

fn transport(timeouts: QuicTimeouts) -> Result<Arc<quinn::TransportConfig>, TlsError> {
    let mut t = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(timeouts.idle).map_err(|e| TlsError::Config(e.to_string()))?;
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(timeouts.keep_alive));
    // One sync stream per connection; a second is a misbehaving peer.
    t.max_concurrent_bidi_streams(1u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    Ok(Arc::new(t))
}

/// A QUIC server presenting `name`'s certificate that accepts only clients with a certificate
/// from the platform CA. Which client it is (its name) is checked by the protocol above, with
/// [`certificate_names`], against the identity it claims.
pub fn quic_server_config(dir: &Path, name: &str, timeouts: QuicTimeouts) -> Result<quinn::ServerConfig, TlsError> {
    let mut tls = (*server_config(dir, name)?).clone();
    tls.alpn_protocols = vec![SYNC_ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(timeouts)?);
    Ok(config)
}

/// A QUIC client presenting `name`'s certificate that accepts only a server whose certificate
/// names `peer` (`control`): a cell never syncs from anything but the control plane.
pub fn quic_client_config(
    dir: &Path,
    name: &str,
    peer: &str,
    timeouts: QuicTimeouts,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = client_config(dir, name, peer)?;
    tls.alpn_protocols = vec![SYNC_ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(timeouts)?);
    Ok(config)
}

/// Whether a certificate (already verified against the CA by the handshake) names `name` as a
/// DNS name: how the control plane knows a client claiming to be cell `uk` holds `uk`'s
/// certificate and not another cell's.
pub fn certificate_names(cert: &CertificateDer<'_>, name: &str) -> bool {
    first_name_of(cert, &[name]).is_some()
}

/// The first of `names` the certificate names, parsing it once for all of them.
pub fn first_name_of<'n>(cert: &CertificateDer<'_>, names: &[&'n str]) -> Option<&'n str> {
    let end_entity = webpki::EndEntityCert::try_from(cert).ok()?;
    names.iter().copied().find(|name| {
        rustls::pki_types::ServerName::try_from(*name)
            .is_ok_and(|server_name| end_entity.verify_is_valid_for_subject_name(&server_name).is_ok())
    })
}

/// A client configuration that can make no TLS connection at all: for plain-HTTP development
/// use, where a TLS connector is still needed as a type.
pub fn no_tls_client_config() -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_loadable_configs_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["uk".to_owned(), "router".to_owned()];
        let first = generate(dir.path(), &names).unwrap();
        assert_eq!(first.len(), 6);
        assert!(generate(dir.path(), &names).unwrap().is_empty(), "a second run changes nothing");
        server_config(dir.path(), "uk").unwrap();
        client_config(dir.path(), "router", "uk").unwrap();
        assert!(matches!(server_config(dir.path(), "dk"), Err(TlsError::File { .. })));
        quic_server_config(dir.path(), "uk", QuicTimeouts::default()).unwrap();
        quic_client_config(dir.path(), "router", "uk", QuicTimeouts::default()).unwrap();
        let uk = certs(&dir.path().join("uk.pem")).unwrap().remove(0);
        assert!(certificate_names(&uk, "uk"));
        assert!(!certificate_names(&uk, "router") && !certificate_names(&uk, "u"));
    }
}
