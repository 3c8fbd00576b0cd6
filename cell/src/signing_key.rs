//! The cell's Ed25519 signing keys (sessions, audit checkpoints): one 32-byte seed per purpose in
//! the data directory, created on first start, readable by its owner only.

use ed25519_dalek::SigningKey;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("signing key {path}: {message}")]
pub struct KeyError {
    pub path: String,
    pub message: String,
}

/// Loads the key at `path`, or creates it there.
pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyError> {
    let fail = |message: String| KeyError { path: path.display().to_string(), message };
    let seed: [u8; 32] = match std::fs::read(path) {
        Ok(bytes) => bytes.try_into().map_err(|_| fail("is not a 32-byte Ed25519 seed".into()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed: [u8; 32] = rand::random();
            write_private(path, &seed).map_err(|e| fail(format!("cannot create: {e}")))?;
            seed
        }
        Err(e) => return Err(fail(format!("cannot read: {e}"))),
    };
    Ok(SigningKey::from_bytes(&seed))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
