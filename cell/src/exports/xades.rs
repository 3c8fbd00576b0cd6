//! The DGOJ's file signature (BOE §4.1.4): an enveloped XAdES-BES signature of a `Lote` with the
//! operator's certificate, exclusive c14n throughout, ECDSA P-256 with SHA-256. The `Lote` is
//! written in canonical form already ([`super::xml`]), so the bytes hashed are the bytes written;
//! `xmlsec1 --verify` checks the result in the tests.
//!
//! The certificate here is a development one, made on first use in the cell's data directory
//! (`exports-signing.{p8,pem,json}`); in production the operator's qualified certificate goes
//! there instead.

use base64::Engine;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use sha2::{Digest, Sha256};
use std::path::Path;

const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
const XADES: &str = "http://uri.etsi.org/01903/v1.3.2#";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const SIGNED_PROPERTIES: &str = "http://uri.etsi.org/01903#SignedProperties";

/// The operator's signing certificate and key.
pub struct Signer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    cert_pem: String,
    /// The certificate's issuer (RFC 2253) and serial number (decimal), for `IssuerSerial`.
    issuer: String,
    serial: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Identity {
    issuer: String,
    serial: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Signer {
    /// Loads the signing identity from `dir`, or makes a development one there.
    pub fn load_or_create(dir: &Path, operator: &str) -> anyhow::Result<Signer> {
        use anyhow::Context;
        let (key_path, pem_path, id_path) =
            (dir.join("exports-signing.p8"), dir.join("exports-signing.pem"), dir.join("exports-signing.json"));
        if !key_path.exists() {
            let key = rcgen::KeyPair::generate().context("generate the export signing key")?;
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
            let common_name = format!("{operator} regulator exports (development)");
            params.distinguished_name.push(rcgen::DnType::CommonName, common_name.as_str());
            let mut serial: [u8; 8] = rand::random();
            serial[0] = serial[0].clamp(1, 0x7f);
            params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
            let cert = params.self_signed(&key).context("self-sign the export certificate")?;
            let identity =
                Identity { issuer: format!("CN={common_name}"), serial: u64::from_be_bytes(serial).to_string() };
            std::fs::write(&pem_path, cert.pem())?;
            std::fs::write(&id_path, serde_json::to_vec_pretty(&identity)?)?;
            write_private(&key_path, &key.serialize_der())?;
        }
        let pkcs8 = std::fs::read(&key_path).with_context(|| format!("read {}", key_path.display()))?;
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|e| anyhow::anyhow!("{} is no P-256 PKCS#8 key: {e}", key_path.display()))?;
        let cert_pem = std::fs::read_to_string(&pem_path).with_context(|| format!("read {}", pem_path.display()))?;
        let cert_der = pem_der(&cert_pem).with_context(|| format!("{} holds no certificate", pem_path.display()))?;
        let identity: Identity = serde_json::from_slice(&std::fs::read(&id_path)?)?;
        Ok(Signer { key, cert_der, cert_pem, issuer: identity.issuer, serial: identity.serial })
    }

    /// The certificate, PEM (what the regulator checks signatures against).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The signed document: `before` and `after` are the canonical `Lote` around the place of
    /// the signature (its last child); the signature covers both, and the signing properties.
    pub fn sign(&self, before: &str, after: &str, at: chrono::DateTime<chrono::Utc>) -> anyhow::Result<String> {
        let digest = |bytes: &[u8]| b64(&Sha256::digest(bytes));
        let ds = format!(" xmlns:ds=\"{DS}\"");
        let signing_time = at.format("%Y-%m-%dT%H:%M:%SZ");
        let signed_properties = format!(
            "<xades:SignedProperties xmlns:xades=\"{XADES}\" Id=\"SignedProperties-1\">\
             <xades:SignedSignatureProperties><xades:SigningTime>{signing_time}</xades:SigningTime>\
             <xades:SigningCertificate><xades:Cert><xades:CertDigest>\
             <ds:DigestMethod{ds} Algorithm=\"{SHA256}\"></ds:DigestMethod>\
             <ds:DigestValue{ds}>{cert_digest}</ds:DigestValue></xades:CertDigest><xades:IssuerSerial>\
             <ds:X509IssuerName{ds}>{issuer}</ds:X509IssuerName>\
             <ds:X509SerialNumber{ds}>{serial}</ds:X509SerialNumber>\
             </xades:IssuerSerial></xades:Cert></xades:SigningCertificate></xades:SignedSignatureProperties>\
             <xades:SignedDataObjectProperties><xades:DataObjectFormat ObjectReference=\"#Reference-Lote\">\
             <xades:MimeType>text/xml</xades:MimeType><xades:Encoding>UTF-8</xades:Encoding>\
             </xades:DataObjectFormat></xades:SignedDataObjectProperties></xades:SignedProperties>",
            cert_digest = digest(&self.cert_der),
            issuer = super::xml::text(&self.issuer),
            serial = self.serial,
        );
        // Reference 1 (URI="", enveloped, exc-c14n): the Lote without the signature element.
        let lote_digest = digest(format!("{before}{after}").as_bytes());
        let properties_digest = digest(signed_properties.as_bytes());
        let signed_info = format!(
            "<ds:SignedInfo xmlns:ds=\"{DS}\">\
             <ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"></ds:CanonicalizationMethod>\
             <ds:SignatureMethod Algorithm=\"{ECDSA_SHA256}\"></ds:SignatureMethod>\
             <ds:Reference Id=\"Reference-Lote\" URI=\"\"><ds:Transforms>\
             <ds:Transform Algorithm=\"{ENVELOPED}\"></ds:Transform>\
             <ds:Transform Algorithm=\"{EXC_C14N}\"></ds:Transform></ds:Transforms>\
             <ds:DigestMethod Algorithm=\"{SHA256}\"></ds:DigestMethod>\
             <ds:DigestValue>{lote_digest}</ds:DigestValue></ds:Reference>\
             <ds:Reference Type=\"{SIGNED_PROPERTIES}\" URI=\"#SignedProperties-1\"><ds:Transforms>\
             <ds:Transform Algorithm=\"{EXC_C14N}\"></ds:Transform></ds:Transforms>\
             <ds:DigestMethod Algorithm=\"{SHA256}\"></ds:DigestMethod>\
             <ds:DigestValue>{properties_digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>"
        );
        let rng = ring::rand::SystemRandom::new();
        let value = self
            .key
            .sign(&rng, signed_info.as_bytes())
            .map_err(|_| anyhow::anyhow!("the export signing key refused to sign"))?;
        Ok(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{before}<ds:Signature xmlns:ds=\"{DS}\" Id=\"Signature-1\">\
             {signed_info}<ds:SignatureValue>{value}</ds:SignatureValue>\
             <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>\
             <ds:Object><xades:QualifyingProperties xmlns:xades=\"{XADES}\" Target=\"#Signature-1\">\
             {signed_properties}</xades:QualifyingProperties></ds:Object></ds:Signature>{after}\n",
            value = b64(value.as_ref()),
            cert = b64(&self.cert_der),
        ))
    }
}

/// The DER bytes of the first PEM block of `pem`.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
