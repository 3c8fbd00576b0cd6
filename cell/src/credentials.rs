//! Players' passwords: the policy a new one must meet, and argon2id hashing with OWASP's
//! parameters (19 MiB of memory, two passes, one lane). A password is never stored or logged as
//! given; only its PHC-format hash is kept.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::HashSet;
use std::sync::OnceLock;

/// Shortest password accepted (NIST SP 800-63B asks for at least 8; OWASP for 12 without other
/// composition rules).
pub const PASSWORD_CHARS_MIN: usize = 12;
/// Longest password accepted: argon2 takes any length, but a megabyte of it is only a way to make
/// the server work.
pub const PASSWORD_BYTES_MAX: usize = 1024;

/// OWASP's argon2id parameters (Password Storage Cheat Sheet): m = 19 MiB, t = 2, p = 1.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP's argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The bundled list of common passwords (`cell/data/common-passwords.txt`), lower case.
fn common() -> &'static HashSet<String> {
    static COMMON: OnceLock<HashSet<String>> = OnceLock::new();
    COMMON.get_or_init(|| {
        include_str!("../data/common-passwords.txt")
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| line.trim().to_lowercase())
            .collect()
    })
}

/// Why a new password is refused (`WEAK_PASSWORD`), in words.
pub fn weakness(player: &str, password: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < PASSWORD_CHARS_MIN {
        return Some(format!("a password needs at least {PASSWORD_CHARS_MIN} characters; this one has {chars}"));
    }
    if password.len() > PASSWORD_BYTES_MAX {
        return Some(format!("a password may have at most {PASSWORD_BYTES_MAX} bytes"));
    }
    let lower = password.to_lowercase();
    if common().contains(&lower) {
        return Some("this password is on the list of common passwords".into());
    }
    let first = password.chars().next();
    if password.chars().all(|c| Some(c) == first) {
        return Some("a password of one repeated character is too easy to guess".into());
    }
    if lower.contains(&player.to_lowercase()) {
        return Some("a password may not contain the player id".into());
    }
    None
}

/// The PHC-format argon2id hash of `password`, with a fresh salt. Takes tens of milliseconds of
/// CPU on purpose: call it off the async runtime.
pub fn hash(password: &str) -> String {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes make a valid salt");
    argon2().hash_password(password.as_bytes(), &salt).expect("argon2 hashes any password").to_string()
}

/// Whether `password` matches `stored`. With no stored hash (an unknown player), the same work is
/// done against a hash of nothing anyone knows, so the answer takes as long either way.
pub fn verify(stored: Option<&str>, password: &str) -> bool {
    static DECOY: OnceLock<String> = OnceLock::new();
    let decoy = DECOY.get_or_init(|| hash(&hex::encode(rand::random::<[u8; 32]>())));
    let (phc, real) = match stored {
        Some(phc) => (phc, true),
        None => (decoy.as_str(), false),
    };
    // The verifier compares the computed hash in constant time.
    let matches =
        PasswordHash::new(phc).is_ok_and(|parsed| argon2().verify_password(password.as_bytes(), &parsed).is_ok());
    matches && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        assert!(weakness("uk-ann", "short").unwrap().contains("at least 12"));
        assert!(weakness("uk-ann", "Password1234").unwrap().contains("common"));
        assert!(weakness("uk-ann", "aaaaaaaaaaaaaaa").unwrap().contains("repeated"));
        assert!(weakness("uk-ann", "my-UK-ANN-secret").unwrap().contains("player id"));
        assert_eq!(weakness("uk-ann", "correct horse battery staple"), None);
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse battery staple");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(verify(Some(&stored), "correct horse battery staple"));
        assert!(!verify(Some(&stored), "correct horse battery stapler"));
        assert!(!verify(None, "correct horse battery staple"), "no stored hash never verifies");
    }
}
