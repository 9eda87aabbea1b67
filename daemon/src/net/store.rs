//! The enrolled workstations: `workstations.json` in the network directory, written
//! atomically on every change, one entry per certificate issued (a workstation enrolled again
//! gets a new entry; its older certificates are revoked).

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::{read, write_atomic, NetError};

/// The store's file.
pub const FILE: &str = "workstations.json";

/// One certificate issued to a workstation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    /// The workstation's name (its certificate's CN).
    pub name: String,
    /// The certificate's serial number, hex.
    pub serial: String,
    /// SHA-256 of the certificate (DER), hex.
    pub fingerprint: String,
    /// Its end, RFC 3339.
    pub not_after: String,
    /// When it was issued, RFC 3339.
    pub enrolled_at: String,
    /// When it was revoked, RFC 3339; `null` while in force.
    pub revoked_at: Option<String>,
}

/// The enrolled workstations, in memory and in their file.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    entries: RwLock<Vec<Enrolled>>,
}

impl Store {
    /// The store of `dir` (empty when its file does not exist yet).
    pub fn open(dir: &Path) -> Result<Store, NetError> {
        let path = dir.join(FILE);
        let entries = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| NetError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(_) => {
                read(&path)?;
                Vec::new()
            }
        };
        Ok(Store {
            path,
            entries: RwLock::new(entries),
        })
    }

    /// Every entry, in the order issued.
    pub fn all(&self) -> Vec<Enrolled> {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The entry in force (not revoked) of the certificate with `fingerprint`.
    pub fn in_force(&self, fingerprint: &str) -> Option<Enrolled> {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|e| e.fingerprint == fingerprint && e.revoked_at.is_none())
            .cloned()
    }

    /// The entry of `fingerprint`, revoked or not.
    pub fn find(&self, fingerprint: &str) -> Option<Enrolled> {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|e| e.fingerprint == fingerprint)
            .cloned()
    }

    /// Records a certificate issued; the workstation's earlier certificates are revoked
    /// `now` (Unix seconds).
    pub fn add(&self, entry: Enrolled, now: i64) -> Result<(), NetError> {
        self.change(|entries| {
            for e in entries.iter_mut() {
                if e.name == entry.name && e.revoked_at.is_none() {
                    e.revoked_at = Some(super::rfc3339(now));
                }
            }
            entries.push(entry);
            1
        })
        .map(|_| ())
    }

    /// Revokes every certificate in force of workstation `name` `now`; how many.
    pub fn revoke(&self, name: &str, now: i64) -> Result<usize, NetError> {
        self.change(|entries| {
            let mut n = 0;
            for e in entries.iter_mut() {
                if e.name == name && e.revoked_at.is_none() {
                    e.revoked_at = Some(super::rfc3339(now));
                    n += 1;
                }
            }
            n
        })
    }

    /// Applies `f` and writes the file (when `f` changed something); `f`'s count.
    fn change(&self, f: impl FnOnce(&mut Vec<Enrolled>) -> usize) -> Result<usize, NetError> {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = entries.clone();
        let n = f(&mut next);
        if n > 0 {
            let mut json = serde_json::to_vec_pretty(&next).map_err(|e| NetError::Invalid {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
            json.push(b'\n');
            if let Some(dir) = self.path.parent() {
                super::make_private_dir(dir)?;
            }
            write_atomic(&self.path, &json, 0o600)?;
            // Only once written: memory never says more than the file.
            *entries = next;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, fp: &str) -> Enrolled {
        Enrolled {
            name: name.into(),
            serial: "01".into(),
            fingerprint: fp.into(),
            not_after: "2029-01-01T00:00:00Z".into(),
            enrolled_at: "2026-12-07T00:00:00Z".into(),
            revoked_at: None,
        }
    }

    #[test]
    fn enrolling_again_revokes_the_older_certificate_and_the_file_keeps_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.add(entry("reception", "aa"), 0).unwrap();
        s.add(entry("doctor", "bb"), 0).unwrap();
        assert!(s.in_force("aa").is_some());
        // 1 800 000 000 s after the epoch is 2027-01-15T08:00:00Z.
        s.add(entry("reception", "cc"), 1_800_000_000).unwrap();
        assert!(s.in_force("aa").is_none());
        assert_eq!(
            s.find("aa").unwrap().revoked_at.as_deref(),
            Some("2027-01-15T08:00:00Z")
        );
        assert_eq!(s.revoke("doctor", 0).unwrap(), 1);
        assert_eq!(s.revoke("doctor", 0).unwrap(), 0, "nothing left in force");
        let back = Store::open(dir.path()).unwrap();
        assert_eq!(back.all(), s.all());
        assert_eq!(back.all().len(), 3);
        assert!(back.in_force("cc").is_some() && back.in_force("bb").is_none());
    }
}
