//! Client country from an IP address, with a MaxMind-format database (by default the CC0
//! `geo-whois-asn-country` database; GeoIP2/GeoLite2 Country and DB-IP files work too).
//!
//! Private, reserved and documentation addresses have no country, whatever a database says (the
//! whois-derived database maps some of them to the registry that holds the block). The database
//! is reloaded when its file changes, without a restart.

use contracts::CountryCode;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// How often the database file is checked for a new version.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("GeoIP database {}: {message}", path.display())]
pub struct GeoError {
    pub path: PathBuf,
    pub message: String,
}

/// The fields we read: `country_code` (geo-whois-asn-country, DB-IP lite) or `country.iso_code`
/// (MaxMind GeoIP2/GeoLite2), borrowed from the database rather than copied for every request.
#[derive(serde::Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country_code: Option<&'a str>,
    #[serde(borrow)]
    country: Option<MaxMindCountry<'a>>,
}

#[derive(serde::Deserialize)]
struct MaxMindCountry<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

struct Loaded {
    reader: maxminddb::Reader<Vec<u8>>,
    modified: Option<SystemTime>,
}

/// A GeoIP database that can be swapped while lookups go on.
pub struct GeoDb {
    path: PathBuf,
    current: RwLock<Arc<Loaded>>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(path: &Path) -> Result<Loaded, GeoError> {
    let modified = modified(path);
    let reader = maxminddb::Reader::open_readfile(path)
        .map_err(|e| GeoError { path: path.to_owned(), message: e.to_string() })?;
    Ok(Loaded { reader, modified })
}

impl GeoDb {
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        if !path.exists() {
            let message = "no such file (a relative path is from the directory the router started in): \
                           `./scripts/fetch-geoip.sh`, run in the repository, fetches the default \
                           database into its .cache/geoip/; or pass another with --geoip FILE";
            return Err(GeoError { path: path.to_owned(), message: message.into() });
        }
        Ok(GeoDb { path: path.to_owned(), current: RwLock::new(Arc::new(load(path)?)) })
    }

    /// The country of `ip`, or `None` for a private, reserved or unlisted address.
    pub fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        if !is_public(ip) {
            return None;
        }
        let db = self.current.read().unwrap_or_else(|p| p.into_inner()).clone();
        let record: Record = db.reader.lookup(ip).ok()?.decode().ok()??;
        CountryCode::new(record.country_code.or_else(|| record.country.and_then(|c| c.iso_code))?).ok()
    }

    /// Reloads the database if its file changed. A file that fails to load keeps the old one.
    pub fn reload_if_changed(&self) -> Result<bool, GeoError> {
        let now = modified(&self.path);
        let before = self.current.read().unwrap_or_else(|p| p.into_inner()).modified;
        if now.is_none() || now == before {
            return Ok(false);
        }
        let fresh = load(&self.path)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(true)
    }
}

/// Whether `ip` is a globally routed unicast address (not private, loopback, link-local, shared,
/// documentation, benchmarking, multicast or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || (a == 192 && b == 0 && c == 0)) // IETF protocol assignments
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_reloads_when_its_file_changes_and_a_bad_file_keeps_the_old_one() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/geoip/geo-whois-asn-country.mmdb");
        assert!(shipped.exists(), "run scripts/fetch-geoip.sh first");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.mmdb");
        std::fs::copy(&shipped, &path).unwrap();
        let db = GeoDb::open(&path).unwrap();
        let gb = "81.2.69.142".parse().unwrap();
        assert_eq!(db.country(gb).map(|c| c.to_string()).as_deref(), Some("GB"));
        assert!(!db.reload_if_changed().unwrap(), "unchanged file, no reload");
        // A broken file: refused, the old database keeps answering.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, b"not a database").unwrap();
        assert!(db.reload_if_changed().is_err());
        assert_eq!(db.country(gb).map(|c| c.to_string()).as_deref(), Some("GB"));
        // A good file again: loaded.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::copy(&shipped, &path).unwrap();
        assert!(db.reload_if_changed().unwrap());
        assert_eq!(db.country(gb).map(|c| c.to_string()).as_deref(), Some("GB"));
    }

    #[test]
    fn private_and_reserved_addresses_have_no_country() {
        for ip in [
            "10.0.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "100.64.0.1",
            "203.0.113.7",
            "198.18.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} is not public");
        }
        for ip in ["81.2.69.142", "8.8.8.8", "2a00:1450::1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }
}
