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
    }
}
