//! The vault: built exports, kept in the cell's data directory (`exports/<id>/`), never rewritten.
//! A build writes into a scratch directory and renames it into place once complete, so a cell
//! killed mid-build leaves no partial export (the scratch is cleared by the next build). Personal
//! data stays here, in the jurisdiction; global-control keeps manifests only.

use super::ExportError;
use contracts::exports::{ExportFile, ExportManifest};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// An export in the vault.
#[derive(Debug, Clone)]
pub struct Stored {
    pub manifest: ExportManifest,
    /// Hex Ed25519 signature of `manifest.json`'s bytes.
    pub signature: String,
    pub dir: PathBuf,
}

pub struct Vault {
    data_dir: PathBuf,
    root: PathBuf,
}

impl Vault {
    pub fn new(data_dir: &Path) -> Vault {
        Vault { data_dir: data_dir.to_owned(), root: data_dir.join("exports") }
    }

    /// The password the regulator's zips are encrypted with (DGOJ §4.1.5: 50 characters, with
    /// digits, letters and `#$&!`), made on first use; agreed with the regulator out of band.
    pub fn zip_password(&self) -> Result<String, ExportError> {
        let path = self.data_dir.join("exports-zip-password");
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Ok(text.trim().to_owned());
        }
        const LETTERS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
        const DIGITS: &[u8] = b"23456789";
        const SPECIAL: &[u8] = b"#$&!";
        let all: Vec<u8> = [LETTERS, DIGITS, SPECIAL].concat();
        let mut password: Vec<u8> = (0..47).map(|_| all[rand::random_range(0..all.len())]).collect();
        for set in [LETTERS, DIGITS, SPECIAL] {
            password.push(set[rand::random_range(0..set.len())]);
        }
        let password = String::from_utf8(password).expect("ASCII");
        // Readable by the cell's user only; made once (a build racing this one reads the winner's).
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(mut file) => {
                file.write_all(password.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| ExportError::io(&path, e))?;
                Ok(password)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::read_to_string(&path).map(|t| t.trim().to_owned()).map_err(|e| ExportError::io(&path, e))
            }
            Err(e) => Err(ExportError::io(&path, e)),
        }
    }

    /// The id of the next build of `kind` for `label`, and its revision (1, then 2...).
    pub fn next_id(&self, cell: &str, kind: &str, label: &str) -> Result<(String, u32), ExportError> {
        let base = format!("{cell}-{kind}-{label}");
        for revision in 1.. {
            let id = if revision == 1 { base.clone() } else { format!("{base}-r{revision}") };
            if !self.root.join(&id).exists() {
                return Ok((id, revision));
            }
        }
        unreachable!("revisions are unbounded")
    }

    /// The latest build of `kind` for `label`, if any.
    pub fn latest(&self, cell: &str, kind: &str, label: &str) -> Result<Option<Stored>, ExportError> {
        let (_, revision) = self.next_id(cell, kind, label)?;
        let base = format!("{cell}-{kind}-{label}");
        match revision {
            1 => Ok(None),
            2 => self.get(&base),
            r => self.get(&format!("{base}-r{}", r - 1)),
        }
    }

    /// A scratch directory for the build of `export_id` (what a killed build left there is
    /// cleared first).
    pub fn scratch(&self, export_id: &str) -> Result<Scratch, ExportError> {
        let dir = self.root.join(format!(".building-{export_id}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| ExportError::io(&dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| ExportError::io(&dir, e))?;
        Ok(Scratch { dir, files: Vec::new() })
    }

    /// Completes a build: the manifest names each file of `scratch` with its hash (read back
    /// from disk), is signed, and the directory is renamed into place. Complete or absent.
    pub fn store(
        &self,
        scratch: Scratch,
        manifest: &mut ExportManifest,
        key: &ed25519_dalek::SigningKey,
    ) -> Result<Stored, ExportError> {
        use ed25519_dalek::Signer;
        for (name, records) in &scratch.files {
            let path = scratch.dir.join(name);
            let (sha256, bytes) = hash_file(&path)?;
            manifest.files.push(ExportFile { name: name.clone(), sha256, bytes, records: *records });
        }
        let json = serde_json::to_vec_pretty(manifest).expect("a manifest encodes");
        let signature = hex::encode(key.sign(&json).to_bytes());
        write_synced(&scratch.dir.join("manifest.json"), &json)?;
        write_synced(&scratch.dir.join("manifest.sig"), signature.as_bytes())?;
        let dir = self.root.join(&manifest.export_id);
        if dir.exists() {
            return Err(ExportError::io(
                &dir,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "never rewritten"),
            ));
        }
        std::fs::rename(&scratch.dir, &dir).map_err(|e| ExportError::io(&dir, e))?;
        sync_dir(&self.root)?;
        Ok(Stored { manifest: manifest.clone(), signature, dir })
    }

    /// Every export in the vault, oldest build first.
    pub fn list(&self) -> Result<Vec<Stored>, ExportError> {
        let mut stored = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(stored),
            Err(e) => return Err(ExportError::io(&self.root, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| ExportError::io(&self.root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            stored.push(read(&entry.path())?);
        }
        stored.sort_by_key(|s| s.manifest.built_at);
        Ok(stored)
    }

    /// One export by id.
    pub fn get(&self, id: &str) -> Result<Option<Stored>, ExportError> {
        let dir = self.root.join(id);
        if id.contains('/') || id.starts_with('.') || !dir.join("manifest.json").exists() {
            return Ok(None);
        }
        read(&dir).map(Some)
    }
}

/// An export being built: its files written as they come (memory does not hold them), each
/// with the regulator's records it holds.
pub struct Scratch {
    dir: PathBuf,
    pub files: Vec<(String, u64)>,
}

impl Scratch {
    /// Writes the file `name` (a path in the export), synced.
    pub fn write(&mut self, name: &str, bytes: &[u8], records: u64) -> Result<(), ExportError> {
        let path = self.path(name)?;
        write_synced(&path, bytes)?;
        self.files.push((name.to_owned(), records));
        Ok(())
    }

    /// Where the file `name` goes (its folders made); the caller writes it and [`Scratch::add`]s it.
    pub fn path(&self, name: &str) -> Result<PathBuf, ExportError> {
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ExportError::io(parent, e))?;
        }
        Ok(path)
    }

    /// Counts a file written at [`Scratch::path`].
    pub fn add(&mut self, name: &str, records: u64) {
        self.files.push((name.to_owned(), records));
    }

    pub fn record_count(&self) -> u64 {
        self.files.iter().map(|(_, r)| r).sum()
    }
}

/// A file's hex SHA-256 and length, read in chunks.
fn hash_file(path: &Path) -> Result<(String, u64), ExportError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| ExportError::io(path, e))?;
    let (mut hasher, mut buf, mut total) = (Sha256::new(), vec![0u8; 64 * 1024], 0u64);
    loop {
        let n = file.read(&mut buf).map_err(|e| ExportError::io(path, e))?;
        if n == 0 {
            return Ok((hex::encode(hasher.finalize()), total));
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// Reads an export's manifest and signature from its directory.
pub fn read(dir: &Path) -> Result<Stored, ExportError> {
    let path = dir.join("manifest.json");
    let json = std::fs::read(&path).map_err(|e| ExportError::io(&path, e))?;
    let manifest = serde_json::from_slice(&json)
        .map_err(|e| ExportError::io(&path, std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())))?;
    let sig_path = dir.join("manifest.sig");
    let signature = std::fs::read_to_string(&sig_path).map_err(|e| ExportError::io(&sig_path, e))?;
    Ok(Stored { manifest, signature: signature.trim().to_owned(), dir: dir.to_owned() })
}

/// The XML a regulator's zip holds (`enveloped.xml`), decrypted with `password`.
pub fn unzip_xml(bytes: &[u8], password: &str) -> Result<String, String> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let mut file = archive.by_name_decrypt("enveloped.xml", password.as_bytes()).map_err(|e| e.to_string())?;
    let mut xml = String::new();
    file.read_to_string(&mut xml).map_err(|e| e.to_string())?;
    Ok(xml)
}

/// Copies an export out of the vault into `out` (files as the regulator requires them, the
/// manifest and its signature); with `unzipped`, each zip's XML beside it.
pub fn copy_out(stored: &Stored, out: &Path, unzipped: Option<&str>) -> Result<(), ExportError> {
    let mut names: Vec<String> = stored.manifest.files.iter().map(|f| f.name.clone()).collect();
    names.extend(["manifest.json".to_owned(), "manifest.sig".to_owned()]);
    for name in names {
        let (from, to) = (stored.dir.join(&name), out.join(&name));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ExportError::io(parent, e))?;
        }
        std::fs::copy(&from, &to).map_err(|e| ExportError::io(&from, e))?;
        let Some(password) = unzipped.filter(|_| name.ends_with(".zip")) else { continue };
        let bytes = std::fs::read(&from).map_err(|e| ExportError::io(&from, e))?;
        let stem = out.join(name.trim_end_matches(".zip"));
        if super::juc::is_pack(&name) {
            // A day's pack (whole: fragments are left packed): each lote's XML in a folder of
            // the pack's name, at its path in the pack.
            for (entry, lote) in super::juc::unpack(&[bytes]).map_err(ExportError::Zip)? {
                let xml = unzip_xml(&lote, password).map_err(ExportError::Zip)?;
                write_xml(&stem.join(entry.trim_end_matches(".zip")), &xml)?;
            }
        } else {
            write_xml(&stem, &unzip_xml(&bytes, password).map_err(ExportError::Zip)?)?;
        }
    }
    Ok(())
}

/// Writes `xml` at `stem` + `.xml`, its folders made.
fn write_xml(stem: &Path, xml: &str) -> Result<(), ExportError> {
    let path = stem.with_extension("xml");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ExportError::io(parent, e))?;
    }
    std::fs::write(&path, xml).map_err(|e| ExportError::io(&path, e))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(|e| ExportError::io(path, e))?;
    file.write_all(bytes).map_err(|e| ExportError::io(path, e))?;
    file.sync_all().map_err(|e| ExportError::io(path, e))
}

fn sync_dir(dir: &Path) -> Result<(), ExportError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ExportError::io(dir, e))
}
