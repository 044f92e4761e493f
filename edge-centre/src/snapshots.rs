//! Snapshot files, outside the database: content-addressed by SHA-256
//! (`{dir}/ab/abcdef….jpg`), so a picture sent twice is stored once. A
//! file is durable (written, synced, renamed into place, folder synced)
//! before the row that names it is committed.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
#[error("snapshot store {path}: {source}")]
pub struct SnapshotError {
    path: PathBuf,
    source: std::io::Error,
}

pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    pub fn open(dir: &Path) -> Result<Self, SnapshotError> {
        fs::create_dir_all(dir).map_err(|source| SnapshotError {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Where the picture with this SHA-256 (hex) lives.
    pub fn path(&self, sha256: &str) -> PathBuf {
        Self::path_in(&self.dir, sha256)
    }

    /// Where the picture with this SHA-256 (hex) lives in store `dir`.
    pub fn path_in(dir: &Path, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("00");
        dir.join(prefix).join(format!("{sha256}.jpg"))
    }

    /// Stores `jpeg` durably; returns its SHA-256 (hex).
    pub fn put(&self, jpeg: &[u8]) -> Result<String, SnapshotError> {
        let sha = hex(&Sha256::digest(jpeg));
        let path = self.path(&sha);
        if path.exists() {
            return Ok(sha);
        }
        let err = |source| SnapshotError {
            path: path.clone(),
            source,
        };
        let folder = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(folder).map_err(err)?;
        let tmp = folder.join(format!(".{sha}.tmp"));
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(jpeg).map_err(err)?;
        f.sync_data().map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)?;
        File::open(folder).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(sha)
    }

    /// Deletes a picture's file (expiry); a missing file is not an error.
    pub fn remove(&self, sha256: &str) -> Result<(), SnapshotError> {
        let path = self.path(sha256);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(SnapshotError { path, source: e })
            }
            _ => Ok(()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_picture_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshots::open(dir.path()).unwrap();
        let a = s.put(b"\xff\xd8\xff one").unwrap();
        let b = s.put(b"\xff\xd8\xff one").unwrap();
        assert_eq!(a, b);
        assert_eq!(fs::read(s.path(&a)).unwrap(), b"\xff\xd8\xff one");
        s.remove(&a).unwrap();
        s.remove(&a).unwrap();
        assert!(!s.path(&a).exists());
    }
}
