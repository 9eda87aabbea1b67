//! The spool-directory transport: a signed lot becomes `<lot id>.lot` in the
//! outbox (written under a temporary name, fsynced, renamed, directory
//! fsynced: it is either whole or absent); ARLs arrive as `<lot id>.arl` in
//! the inbox and are removed only after they are committed.

use std::io::Write;
use std::path::{Path, PathBuf};

use fse_formats::wire::{
    SPOOL_ARL_SUFFIX, SPOOL_DRE_LOT_SUFFIX, SPOOL_LOT_SUFFIX, SPOOL_PAYMENT_SUFFIX,
};

/// The outbox and inbox of a spool transport.
#[derive(Debug, Clone)]
pub struct Spool {
    /// Where lots are written.
    pub outbox: PathBuf,
    /// Where ARLs are read.
    pub inbox: PathBuf,
}

/// A lot id usable as a file name (no separators, no dot prefix).
fn safe_name(lot_id: &str) -> Option<&str> {
    (!lot_id.is_empty()
        && !lot_id.starts_with('.')
        && lot_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(lot_id)
}

/// Writes `bytes` to `dir/name` atomically and durably.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

impl Spool {
    /// Creates both directories when missing (mode 0750 whatever the umask).
    pub fn open(outbox: PathBuf, inbox: PathBuf) -> std::io::Result<Spool> {
        crate::mark::create_private_dir(&outbox)?;
        crate::mark::create_private_dir(&inbox)?;
        Ok(Spool { outbox, inbox })
    }

    /// Puts a DRE lot in the outbox as `<lot id>.<AMC number>.dre`, as [`Spool::send`] does a lot.
    pub fn send_dre(&self, lot_id: &str, amc: &str, der: &[u8]) -> std::io::Result<()> {
        let (Some(lot), Some(amc)) = (safe_name(lot_id), safe_name(amc)) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "lot id or AMC number not usable as a file name",
            ));
        };
        write_atomic(
            &self.outbox,
            &format!("{lot}.{amc}.{SPOOL_DRE_LOT_SUFFIX}"),
            der,
        )
    }

    /// Puts a lot in the outbox. Writing the same lot again replaces it whole (the insurer dedups by lot id).
    pub fn send(&self, lot_id: &str, der: &[u8]) -> std::io::Result<()> {
        let name = safe_name(lot_id).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "lot id not usable as a file name",
            )
        })?;
        write_atomic(&self.outbox, &format!("{name}.{SPOOL_LOT_SUFFIX}"), der)
    }

    /// The return files waiting in the inbox (ARLs `.arl`, payment returns `.pay`), by name:
    /// a lot's ARL (`<lot>.arl`) comes before its payment return (`<lot>.pay`).
    pub fn pending_returns(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&self.inbox)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == SPOOL_ARL_SUFFIX || x == SPOOL_PAYMENT_SUFFIX)
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lot_files_are_whole_and_names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("out"), dir.path().join("in")).unwrap();
        spool.send("81000-00000001", b"lot").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("out/81000-00000001.lot")).unwrap(),
            b"lot"
        );
        assert!(spool.send("../evil", b"x").is_err());
        std::fs::write(dir.path().join("in/L1.arl"), b"a").unwrap();
        std::fs::write(dir.path().join("in/.L2.arl.tmp"), b"a").unwrap();
        assert_eq!(spool.pending_returns().unwrap().len(), 1);
    }
}
