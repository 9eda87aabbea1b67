//! The spool-directory transport: a signed lot becomes `<lot id>.lot` in the
//! outbox (written under a temporary name, fsynced, renamed, directory
//! fsynced: it is either whole or absent); ARLs arrive as `<lot id>.arl` in
//! the inbox and are removed only after they are committed.
//!
//! Whatever is in the inbox is outside input: an entry is opened without following a link and
//! without blocking (`O_NOFOLLOW | O_NONBLOCK`), taken only when the opened file is a regular
//! file no larger than [`Spool::max_return_bytes`], and read to at most that many bytes and one.
//! Anything else (a FIFO, a link, a device, a directory, a file too large or one that grows
//! while it is read) is moved aside, to the inbox's `.quarantine` folder, with a
//! `<name>.reason` file saying why ([`Spool::read_return`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    /// Largest return file read (`transport.spool_max_return_bytes`); a larger one is
    /// quarantined unread.
    pub max_return_bytes: u64,
    /// Inbox entries quarantined since start.
    quarantined: Arc<AtomicU64>,
}

/// The default of `transport.spool_max_return_bytes`: 16 MiB. The largest legitimate return is
/// a payment return for a full lot of the largest size (`lots.max_sheets` at most 100,000):
/// a payment paid takes at most 31 bytes of DER (sequence header 2, sheet number 2 + 9, outcome
/// 3, amount 2 + 9, two empty strings 2 + 2), one refused about 160 with a code and a reason of
/// a hundred characters; 100,000 × 160 = 16,000,000 bytes ≤ 16 × 1,048,576 = 16,777,216.
pub const DEFAULT_MAX_RETURN_BYTES: u64 = 16 * 1024 * 1024;

/// The folder of the inbox where unfit entries are moved (hidden, so never taken for a return;
/// inside the inbox, so the move is a rename on the same file system and needs no other
/// writable folder).
pub const QUARANTINE_DIR: &str = ".quarantine";

/// What reading one inbox entry gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    /// A regular file within the limit: its bytes.
    Read(Vec<u8>),
    /// Not fit to be read: moved to the quarantine folder (where it now is), for this reason.
    Quarantined {
        /// Where the entry is now.
        to: PathBuf,
        /// Why.
        reason: String,
    },
    /// Gone before it could be read (the insurer took it back, another reader): nothing to do.
    Gone,
}

/// Where the reason of the quarantined entry `to` is written: `<to>.reason`.
pub fn reason_path(to: &Path) -> PathBuf {
    let mut why = to.as_os_str().to_owned();
    why.push(".reason");
    PathBuf::from(why)
}

/// Why an inbox entry cannot be read, when it is not fit (else `None`).
fn unfit(file_type: std::fs::FileType, size: u64, limit: u64) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let kind = if file_type.is_file() {
        return (size > limit).then(|| {
            format!("{size} bytes, over the limit of {limit} (transport.spool_max_return_bytes)")
        });
    } else if file_type.is_symlink() {
        "a symbolic link (links are not followed)"
    } else if file_type.is_fifo() {
        "a FIFO, not a regular file"
    } else if file_type.is_dir() {
        "a directory, not a regular file"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device, not a regular file"
    } else if file_type.is_socket() {
        "a socket, not a regular file"
    } else {
        "not a regular file"
    };
    Some(kind.to_string())
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
        Ok(Spool {
            outbox,
            inbox,
            max_return_bytes: DEFAULT_MAX_RETURN_BYTES,
            quarantined: Arc::default(),
        })
    }

    /// The same spool, reading return files of at most `limit` bytes.
    pub fn with_max_return_bytes(mut self, limit: u64) -> Spool {
        self.max_return_bytes = limit;
        self
    }

    /// The inbox's quarantine folder.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.inbox.join(QUARANTINE_DIR)
    }

    /// Inbox entries quarantined since start.
    pub fn quarantined(&self) -> u64 {
        self.quarantined.load(Ordering::Relaxed)
    }

    /// Reads the return file at `path` (an entry of the inbox) when it is fit: a regular file,
    /// not a link, of at most [`Spool::max_return_bytes`]. It is looked at without following a
    /// link (`lstat`), opened with `O_NOFOLLOW | O_NONBLOCK` (a FIFO does not block, a link
    /// put there meanwhile fails), looked at again through the opened descriptor (`fstat`),
    /// and read to at most the limit and one byte (a file that grows is caught). An unfit
    /// entry is moved to [`Spool::quarantine_dir`] with a `<name>.reason` file. `Err` when
    /// the entry cannot be looked at, opened or moved (it stays; the next scan tries again).
    pub fn read_return(&self, path: &Path) -> std::io::Result<Entry> {
        use rustix::fs::{Mode, OFlags};
        let limit = self.max_return_bytes;
        let gone = |e: std::io::Error| -> std::io::Result<Entry> {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(Entry::Gone)
            } else {
                Err(e)
            }
        };
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => return gone(e),
        };
        if let Some(reason) = unfit(meta.file_type(), meta.len(), limit) {
            return self.quarantine(path, reason);
        }
        let fd = match rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Swapped for a link since it was looked at.
            Err(rustix::io::Errno::LOOP) => {
                return self.quarantine(path, "a symbolic link (links are not followed)".into())
            }
            Err(e) => return gone(e.into()),
        };
        let file = std::fs::File::from(fd);
        let meta = file.metadata()?;
        if let Some(reason) = unfit(meta.file_type(), meta.len(), limit) {
            drop(file);
            return self.quarantine(path, reason);
        }
        // At most the limit and one byte: more means it grew while being read.
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
            drop(bytes);
            return self.quarantine(
                path,
                format!("grew past the limit of {limit} bytes (transport.spool_max_return_bytes) while read"),
            );
        }
        Ok(Entry::Read(bytes))
    }

    /// Moves the inbox entry `path` (the entry itself, never what a link names) to the
    /// quarantine folder under a name not taken yet, and writes `<that name>.reason` beside it.
    fn quarantine(&self, path: &Path, reason: String) -> std::io::Result<Entry> {
        let why = format!("{}: {reason}", path.display());
        match self.move_aside(path, &self.quarantine_dir(), &why)? {
            Some(to) => {
                self.quarantined.fetch_add(1, Ordering::Relaxed);
                Ok(Entry::Quarantined { to, reason })
            }
            None => Ok(Entry::Gone),
        }
    }

    /// Moves the inbox entry `path` (the entry itself, never what a link names) into `dir`
    /// (made when missing; refused when it is not a folder, a link included) under a name not
    /// taken yet, and writes `why` to `<that name>.reason` beside it, a new file (`O_EXCL`: never
    /// through a link left there); the entry is moved all the same when its reason cannot be
    /// written. `Ok(None)`: the entry was gone already.
    pub fn move_aside(
        &self,
        path: &Path,
        dir: &Path,
        why: &str,
    ) -> std::io::Result<Option<PathBuf>> {
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is not a folder: nothing is moved there",
                    dir.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::mark::create_private_dir(dir)?
            }
            Err(e) => return Err(e),
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "entry".into());
        let mut to = dir.join(&name);
        let mut n = 0u32;
        while std::fs::symlink_metadata(&to).is_ok()
            || std::fs::symlink_metadata(reason_path(&to)).is_ok()
        {
            n += 1;
            to = dir.join(format!("{name}.{n}"));
        }
        if let Err(e) = std::fs::rename(path, &to) {
            return if e.kind() == std::io::ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(e)
            };
        }
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(reason_path(&to))
            .and_then(|mut f| writeln!(f, "{why}"));
        if let Err(e) = written {
            tracing::warn!(file = %to.display(), error = %e, "reason of an entry moved aside not written");
        }
        Ok(Some(to))
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

    /// Puts an attachment lot in the outbox as `<attachment lot id>.att`, as [`Spool::send`]
    /// does a lot.
    pub fn send_attachment_lot(&self, lot_id: &str, der: &[u8]) -> std::io::Result<()> {
        let name = safe_name(lot_id).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "attachment lot id not usable as a file name",
            )
        })?;
        write_atomic(
            &self.outbox,
            &format!("{name}.{}", fse_formats::wire::SPOOL_ATTACHMENT_LOT_SUFFIX),
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

    #[test]
    fn unfit_inbox_entries_are_quarantined_unread_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        // A limit of 100 bytes, so that a 101-byte file is over it.
        let spool = Spool::open(dir.path().join("out"), dir.path().join("in"))
            .unwrap()
            .with_max_return_bytes(100);
        let inbox = dir.path().join("in");
        std::fs::write(inbox.join("A.arl"), [7u8; 100]).unwrap();
        std::fs::write(inbox.join("B.arl"), [7u8; 101]).unwrap();
        std::os::unix::fs::symlink("/dev/zero", inbox.join("C.pay")).unwrap();
        let fifo = inbox.join("D.arl");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        std::fs::create_dir(inbox.join("E.arl")).unwrap();
        // A link to a regular file is not followed either.
        std::fs::write(dir.path().join("elsewhere"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), inbox.join("F.arl")).unwrap();

        assert_eq!(
            spool.read_return(&inbox.join("A.arl")).unwrap(),
            Entry::Read(vec![7u8; 100])
        );
        let q = spool.quarantine_dir();
        for (name, why) in [
            ("B.arl", "101 bytes, over the limit of 100"),
            ("C.pay", "symbolic link"),
            ("D.arl", "FIFO"),
            ("E.arl", "directory"),
            ("F.arl", "symbolic link"),
        ] {
            match spool.read_return(&inbox.join(name)).unwrap() {
                Entry::Quarantined { to, reason } => {
                    assert_eq!(to, q.join(name));
                    assert!(reason.contains(why), "{name}: {reason}");
                    let file = std::fs::read_to_string(reason_path(&to)).unwrap();
                    assert!(file.contains(why), "{name}: {file}");
                }
                other => panic!("{name}: {other:?}"),
            }
            assert!(
                std::fs::symlink_metadata(inbox.join(name)).is_err(),
                "{name} moved"
            );
        }
        assert_eq!(spool.quarantined(), 5);
        // The link itself was moved, not what it names.
        assert!(std::fs::symlink_metadata(q.join("C.pay"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(dir.path().join("elsewhere")).unwrap(), b"x");
        // A second entry of the same name gets a name of its own.
        std::fs::write(inbox.join("B.arl"), [7u8; 200]).unwrap();
        match spool.read_return(&inbox.join("B.arl")).unwrap() {
            Entry::Quarantined { to, .. } => assert_eq!(to, q.join("B.arl.1")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            spool.read_return(&inbox.join("gone.arl")).unwrap(),
            Entry::Gone
        );
        // Only A.arl is left to read.
        assert_eq!(spool.pending_returns().unwrap(), vec![inbox.join("A.arl")]);
    }

    #[test]
    fn a_quarantine_folder_that_is_a_link_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("out"), dir.path().join("in")).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, spool.quarantine_dir()).unwrap();
        std::os::unix::fs::symlink("/dev/zero", spool.inbox.join("Z.arl")).unwrap();
        assert!(spool.read_return(&spool.inbox.join("Z.arl")).is_err());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
