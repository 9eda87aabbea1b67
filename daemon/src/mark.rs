//! The high-water mark: how far the database had gone, kept OUTSIDE the database file
//! (`<database>.mark`, next to it), so that a database that comes back shorter than it was
//! (a WAL truncated or deleted, an old copy put back) is noticed instead of served.
//!
//! The mark holds the id of the last event (every commit writes one, none is ever deleted)
//! and each practitioner's counters (sheet numbers reserved, lots made). It only grows: it is
//! written (temporary file, fsync, rename, fsync of the directory) by the committer after a
//! commit that reserved a block of sheet numbers or made a lot, before anyone gets a number
//! of that block; by the checkpointer thread at most every [`MARK_EVERY`] when the database
//! went further; and at a clean stop. At start, and in `fsed check-config`, the database is
//! compared with it; a database behind its mark keeps fsed from starting until a backup is
//! restored (`fsed restore`) or the loss is accepted (`fsed accept-loss`), which are the only
//! ways a mark goes down.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fse_queue::{HighWater, Queue, QueueError};
use serde::{Deserialize, Serialize};

/// How often at most the checkpointer thread writes the mark when the database went further.
pub const MARK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The mode of every file fsed keeps in its state directory: the database, its WAL and
/// shared-memory files, the mark.
pub const PRIVATE_FILE: u32 = 0o600;

/// The mode of a directory fsed creates (state, spool): its group may read, no one else.
pub const PRIVATE_DIR: u32 = 0o750;

/// Where the mark of the database at `db` is kept.
pub fn mark_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".mark");
    db.with_file_name(name)
}

/// The database's WAL and shared-memory files (SQLite's names).
pub fn companions(db: &Path) -> [PathBuf; 2] {
    ["-wal", "-shm"].map(|suffix| {
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        db.with_file_name(name)
    })
}

/// One practitioner's counters in the mark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Every sheet number below it was reserved.
    pub next_sheet: u64,
    /// Every lot number below it was made.
    pub next_lot: u64,
}

/// The high-water mark as written in its file (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The last event the database was known to hold.
    pub last_event: i64,
    /// Counters per practitioner.
    pub practitioners: BTreeMap<String, Counters>,
}

impl Mark {
    /// The mark of a database that goes as far as `hw`.
    pub fn of(hw: &HighWater) -> Mark {
        let mut mark = Mark::default();
        mark.raise(hw);
        mark
    }

    /// Raises the mark to `hw` where `hw` goes further; whether anything changed and whether
    /// the counters did.
    fn raise(&mut self, hw: &HighWater) -> (bool, bool) {
        let mut counters = false;
        for (pid, p) in &hw.practitioners {
            let c = self.practitioners.entry(pid.clone()).or_default();
            if p.next_sheet > c.next_sheet || p.next_lot > c.next_lot {
                c.next_sheet = c.next_sheet.max(p.next_sheet);
                c.next_lot = c.next_lot.max(p.next_lot);
                counters = true;
            }
        }
        let event = hw.last_event > self.last_event;
        self.last_event = self.last_event.max(hw.last_event);
        (counters || event, counters)
    }

    /// What the mark says was committed and `hw` (the database) lacks, a line each; empty
    /// when the database goes at least as far.
    pub fn missing(&self, hw: &HighWater) -> Vec<String> {
        let mut lines = Vec::new();
        for (pid, c) in &self.practitioners {
            let db = hw.practitioners.get(pid).copied().unwrap_or_default();
            let last = db
                .last_sheet
                .map_or_else(|| "no sheet".to_string(), |n| format!("sheets up to {n}"));
            if db.next_sheet < c.next_sheet {
                lines.push(format!(
                    "practitioner {pid}: sheet numbers up to {} were reserved, the database holds reservations up to {} ({last})",
                    c.next_sheet.saturating_sub(1),
                    db.next_sheet.saturating_sub(1),
                ));
            }
            if db.next_lot < c.next_lot {
                lines.push(format!(
                    "practitioner {pid}: lots up to number {} were made, the database holds lots up to {}",
                    c.next_lot.saturating_sub(1),
                    db.next_lot.saturating_sub(1),
                ));
            }
        }
        if hw.last_event < self.last_event {
            lines.push(format!(
                "changes up to event {} were committed, the database holds events up to {} ({} events missing)",
                self.last_event,
                hw.last_event,
                self.last_event - hw.last_event
            ));
        }
        lines
    }

    /// Reads the mark at `path`: `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<Mark>, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("mark file {}: unreadable: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("mark file {}: {e}", path.display())),
        }
    }

    /// Writes the mark at `path` whole or not at all: a temporary file (mode 0600) written and
    /// synced, renamed over the old one, and the directory synced.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_private_atomic(path, &bytes)
    }
}

/// Writes `bytes` at `path` atomically and durably, mode 0600 whatever the umask.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE_FILE)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Syncs the directory holding `path` (a rename in it made durable).
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents, each with mode 0750 whatever the umask.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    for d in missing {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(PRIVATE_DIR))?;
    }
    Ok(())
}

/// Makes the database file before SQLite does, mode 0600 (SQLite gives its WAL and
/// shared-memory files the database's mode), and sets 0600 on the three when they exist with
/// another mode (made by an older fsed, or by hand).
pub fn make_private(db: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(db)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let [wal, shm] = companions(db);
    for file in [db.to_path_buf(), wal, shm] {
        match std::fs::metadata(&file) {
            Ok(m) if m.permissions().mode() & 0o777 != PRIVATE_FILE => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(PRIVATE_FILE))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Takes the lock of the database at `db` (`<database>.lock`, mode 0600, an exclusive
/// `flock` held while the returned file is open): one fsed per database, and the offline
/// commands (`fsed restore`, `fsed accept-loss`) only while fsed is stopped.
pub fn lock_database(db: &Path) -> Result<std::fs::File, String> {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let path = db.with_file_name(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE)
        .open(&path)
        .map_err(|e| format!("lock file {}: {e}", path.display()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(format!(
            "the database {} is in use by a running fsed (lock {} held): stop it first",
            db.display(),
            path.display()
        )),
        Err(e) => Err(format!("lock file {}: {e}", path.display())),
    }
}

/// The mark of a running store, kept in memory and written when the database goes further.
pub struct Keeper {
    path: PathBuf,
    mark: Mutex<Mark>,
}

impl Keeper {
    /// The keeper of the mark of the database at `db`, from the mark file (none or an
    /// unreadable one: a mark from nothing, raised at the first [`Keeper::raise`]).
    pub fn load(db: &Path) -> Keeper {
        let path = mark_path(db);
        let mark = Mark::read(&path).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "starting the mark again from the database");
            None
        });
        Keeper {
            path,
            mark: Mutex::new(mark.unwrap_or_default()),
        }
    }

    /// Raises the mark to what `queue` holds now and writes it when it changed (`counters_only`:
    /// only when the counters did). A mark that cannot be written is logged: fsed goes on, and
    /// the next write tries again.
    pub fn raise(&self, queue: &Queue, counters_only: bool) {
        if let Err(e) = self.try_raise(queue, counters_only) {
            tracing::error!(mark = %self.path.display(), error = %e, "cannot write the high-water mark; a database cut short would not be noticed");
        }
    }

    fn try_raise(&self, queue: &Queue, counters_only: bool) -> Result<(), String> {
        let hw = queue.high_water().map_err(|e| e.to_string())?;
        // Poisoned: a write panicked; the mark in memory is at worst not yet written.
        let mut mark = self.mark.lock().unwrap_or_else(|p| p.into_inner());
        let mut raised = mark.clone();
        let (changed, counters) = raised.raise(&hw);
        if !(if counters_only { counters } else { changed }) {
            return Ok(());
        }
        raised.write(&self.path).map_err(|e| e.to_string())?;
        *mark = raised;
        Ok(())
    }
}

/// What the offline check found: the database's high water and what its mark says is missing.
#[derive(Debug)]
pub struct Checked {
    /// What the database holds (`None`: there is no database file).
    pub database: Option<HighWater>,
    /// The mark (`None`: there is none yet).
    pub mark: Option<Mark>,
    /// What is missing, a line each.
    pub missing: Vec<String>,
}

/// Committed data missing from the database: fsed does not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "committed data is missing from the database {db}: {}. The database is shorter than its \
     high-water mark {mark} (its WAL was cut or removed, or an older copy was put back). With \
     fsed stopped, restore the latest backup (`fsed restore FILE`), or accept the loss \
     (`fsed accept-loss`: the mark then follows the database, and the numbers it had handed \
     out are never handed out again)",
    missing.join("; "),
    mark = mark.display(),
    db = db.display()
)]
pub struct DataLost {
    /// The database.
    pub db: PathBuf,
    /// Its mark file.
    pub mark: PathBuf,
    /// What is missing, a line each.
    pub missing: Vec<String>,
}

/// Why the offline check could not compare.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The database is behind its mark.
    #[error(transparent)]
    Lost(#[from] DataLost),
    /// The database cannot be read.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The mark cannot be read.
    #[error("{0}")]
    Mark(String),
}

/// Compares the database at `db` with its mark without writing to either (the database is
/// opened read-only: a WAL is read as it is). A database behind its mark is [`DataLost`].
pub fn check(db: &Path) -> Result<Checked, CheckError> {
    let checked = inspect(db)?;
    if checked.missing.is_empty() {
        Ok(checked)
    } else {
        Err(CheckError::Lost(DataLost {
            db: db.to_path_buf(),
            mark: mark_path(db),
            missing: checked.missing,
        }))
    }
}

/// [`check`] without the verdict: what the database and its mark hold.
pub fn inspect(db: &Path) -> Result<Checked, CheckError> {
    let mark = Mark::read(&mark_path(db)).map_err(CheckError::Mark)?;
    let database = if db.exists() {
        Some(Queue::open_to_look(db)?.high_water()?)
    } else {
        None
    };
    let missing = match &mark {
        Some(m) => m.missing(database.as_ref().unwrap_or(&HighWater::default())),
        None => Vec::new(),
    };
    Ok(Checked {
        database,
        mark,
        missing,
    })
}

/// Says what a database holds: its sheets and lots per state and how far it goes.
pub fn describe(stats: &fse_queue::Stats, hw: &HighWater) -> String {
    let per_state = |m: &BTreeMap<String, u64>| {
        let total: u64 = m.values().sum();
        let parts: Vec<String> = m
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        if parts.is_empty() {
            format!("{total}")
        } else {
            format!("{total} ({})", parts.join(", "))
        }
    };
    let counters: Vec<String> =
        hw.practitioners
            .iter()
            .map(|(pid, p)| {
                format!(
                "practitioner {pid}: sheet numbers reserved up to {}, last sheet {}, lots up to {}",
                p.next_sheet.saturating_sub(1),
                p.last_sheet.map_or_else(|| "none".to_string(), |n| n.to_string()),
                p.next_lot.saturating_sub(1)
            )
            })
            .collect();
    format!(
        "sheets {}; lots {}; events up to {}{}{}",
        per_state(&stats.sheets),
        per_state(&stats.lots),
        hw.last_event,
        if counters.is_empty() { "" } else { "; " },
        counters.join("; ")
    )
}

/// Raises the counters of the database at `db` to those of `mark` (numbers a lost part of
/// the database had handed out are never handed out again) and writes the mark anew from what
/// the database then holds. Returns the practitioners whose counters were raised and what the
/// database holds.
fn remark(db: &Path, mark: Option<&Mark>) -> Result<(Vec<String>, String), String> {
    let mut queue = Queue::open(db).map_err(|e| e.to_string())?;
    let raised = match mark {
        Some(m) => {
            let at_least = m
                .practitioners
                .iter()
                .map(|(pid, c)| (pid.clone(), (c.next_sheet, c.next_lot)))
                .collect();
            queue.raise_counters(&at_least).map_err(|e| e.to_string())?
        }
        None => Vec::new(),
    };
    let hw = queue.high_water().map_err(|e| e.to_string())?;
    let stats = queue.stats().map_err(|e| e.to_string())?;
    // Closing the last connection copies the WAL into the file and removes it.
    drop(queue);
    make_private(db).map_err(|e| format!("{}: {e}", db.display()))?;
    Mark::of(&hw)
        .write(&mark_path(db))
        .map_err(|e| format!("mark file {}: {e}", mark_path(db).display()))?;
    Ok((raised, describe(&stats, &hw)))
}

/// Gives the database's files (the database, its mark and lock) the owner of their directory
/// when they have another: an offline command run as root must leave files fsed's own user
/// can open.
fn follow_owner(db: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let owner = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut lock = db.as_os_str().to_os_string();
    lock.push(".lock");
    for file in [db.to_path_buf(), mark_path(db), PathBuf::from(lock)] {
        match std::fs::metadata(&file) {
            Ok(m) if m.uid() != owner.uid() || m.gid() != owner.gid() => {
                std::os::unix::fs::chown(&file, Some(owner.uid()), Some(owner.gid())).map_err(
                    |e| {
                        format!(
                            "cannot give {} to its directory's owner: {e}",
                            file.display()
                        )
                    },
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// `fsed restore FILE` (fsed stopped): `backup` is copied beside the database, checked
/// (`PRAGMA integrity_check`, an fsed database of a schema this build knows), and put in its
/// place; the database it replaces is kept beside it (`<database>.replaced-<seconds>`, with
/// its WAL); the counters are raised to the old mark's; the mark is written from the backup's
/// content. Returns the report to print.
pub fn restore(db: &Path, backup: &Path) -> Result<String, String> {
    let dir = db.parent().unwrap_or(Path::new("."));
    create_private_dir(dir).map_err(|e| format!("state directory {}: {e}", dir.display()))?;
    let _lock = lock_database(db)?;
    let old_mark = Mark::read(&mark_path(db)).unwrap_or_else(|e| {
        eprintln!("fsed: {e}; the counters are not raised from it");
        None
    });
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".restoring");
    let tmp = db.with_file_name(name);
    let (hw, stats) = copy_checked(backup, &tmp)?;
    let mut report = vec![format!(
        "the backup {} holds {}",
        backup.display(),
        describe(&stats, &hw)
    )];
    if let Some(m) = &old_mark {
        for line in m.missing(&hw) {
            report.push(format!(
                "not in the backup (made again or given up): {line}"
            ));
        }
    }
    if let Some(kept) = move_aside(db)? {
        report.push(format!(
            "the database it replaces is kept as {}",
            kept.display()
        ));
    }
    std::fs::rename(&tmp, db).map_err(|e| format!("cannot put the backup in place: {e}"))?;
    sync_dir(db).map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
    let (raised, now) = remark(db, old_mark.as_ref())?;
    follow_owner(db)?;
    if !raised.is_empty() {
        report.push(format!(
            "counters raised to the old mark (numbers handed out before are not handed out again): {}",
            raised.join(", ")
        ));
    }
    report.push(format!(
        "restored into {}: {now}; the high-water mark follows it",
        db.display()
    ));
    Ok(report.join("\n"))
}

/// `backup` copied to `tmp` (made anew, private, synced) and checked there: SQLite's
/// `integrity_check`, an fsed database of a schema this build knows. Returns its high-water mark
/// and counts; on any failure the copy is removed.
fn copy_checked(backup: &Path, tmp: &Path) -> Result<(HighWater, fse_queue::Stats), String> {
    let remove_tmp = || {
        for f in std::iter::once(tmp.to_path_buf()).chain(companions(tmp)) {
            let _ = std::fs::remove_file(f);
        }
    };
    remove_tmp();
    let copied = (|| -> std::io::Result<()> {
        let mut from = std::fs::File::open(backup)?;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE)
            .open(tmp)?;
        std::io::copy(&mut from, &mut to)?;
        to.sync_all()
    })();
    if let Err(e) = copied {
        remove_tmp();
        return Err(format!("cannot copy the backup {}: {e}", backup.display()));
    }
    let checked = (|| -> Result<(HighWater, fse_queue::Stats), QueueError> {
        let copy = Queue::open_to_inspect(tmp)?;
        if let Err(found) = copy.integrity_check()? {
            return Err(QueueError::Corrupt {
                path: backup.to_path_buf(),
                detail: format!("integrity_check: {found}").into(),
            });
        }
        Ok((copy.high_water()?, copy.stats()?))
    })();
    let (hw, stats) = match checked {
        Ok(c) => c,
        Err(e) => {
            remove_tmp();
            return Err(format!("the backup {} is refused: {e}", backup.display()));
        }
    };
    // The read-only look may leave a shared-memory file; the copy has no WAL of its own.
    for f in companions(tmp) {
        let _ = std::fs::remove_file(f);
    }
    Ok((hw, stats))
}

/// The database at `db`, if there is one, moved aside with its WAL and shared-memory files
/// (`<database>.replaced-<seconds>`, whose path is returned); without one, any stray WAL or
/// shared-memory file removed.
fn move_aside(db: &Path) -> Result<Option<PathBuf>, String> {
    Ok(if db.exists() {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".replaced-{stamp}"));
        let kept = db.with_file_name(name);
        // The WAL and shared-memory files follow their database (SQLite finds them by name):
        // none is left to be read with the restored file.
        for (from, to) in companions(db).into_iter().zip(companions(&kept)) {
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot move {} aside: {e}", from.display())),
            }
        }
        std::fs::rename(db, &kept)
            .map_err(|e| format!("cannot move {} aside: {e}", db.display()))?;
        Some(kept)
    } else {
        for f in companions(db) {
            let _ = std::fs::remove_file(f);
        }
        None
    })
}

/// `fsed accept-loss` (fsed stopped): what the database lacks compared with its mark is given
/// up: the counters are raised to the mark's (no number is handed out twice) and the mark is
/// written from what the database holds. Returns the report to print.
pub fn accept_loss(db: &Path) -> Result<String, String> {
    let _lock = lock_database(db)?;
    let (mark, missing) = match inspect(db) {
        Ok(c) => (c.mark, c.missing),
        // An unreadable mark is replaced: there is nothing in it to raise the counters to.
        Err(CheckError::Mark(e)) => {
            eprintln!("fsed: {e}; it is replaced");
            (None, Vec::new())
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut report: Vec<String> = missing
        .iter()
        .map(|line| format!("given up: {line}"))
        .collect();
    if report.is_empty() {
        report.push("nothing is missing from the database".into());
    }
    let (raised, now) = remark(db, mark.as_ref())?;
    follow_owner(db)?;
    if !raised.is_empty() {
        report.push(format!(
            "counters raised to the mark (numbers handed out before are not handed out again): {}",
            raised.join(", ")
        ));
    }
    report.push(format!(
        "the database {} holds {now}; the high-water mark follows it",
        db.display()
    ));
    Ok(report.join("\n"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use fse_queue::PractitionerMark;

    fn hw(last_event: i64, next_sheet: u64, next_lot: u64, last: Option<u64>) -> HighWater {
        let mut practitioners = BTreeMap::new();
        practitioners.insert(
            "P1".to_string(),
            PractitionerMark {
                next_sheet,
                next_lot,
                last_sheet: last,
            },
        );
        HighWater {
            last_event,
            practitioners,
        }
    }

    #[test]
    fn a_database_behind_its_mark_is_named_part_by_part() {
        // Three blocks of 128 reserved: next number 3 × 128 + 1 = 385; two lots made.
        let mark = Mark::of(&hw(900, 385, 3, Some(300)));
        assert!(mark.missing(&hw(900, 385, 3, Some(300))).is_empty());
        assert!(mark.missing(&hw(950, 513, 4, Some(400))).is_empty());
        // One block and a lot fewer, 100 events fewer.
        let lost = mark.missing(&hw(800, 257, 2, Some(200)));
        assert_eq!(lost.len(), 3, "{lost:?}");
        assert!(lost[0].contains("sheet numbers up to 384 were reserved, the database holds reservations up to 256 (sheets up to 200)"), "{lost:?}");
        assert!(
            lost[1].contains("lots up to number 2 were made, the database holds lots up to 1"),
            "{lost:?}"
        );
        assert!(
            lost[2].contains("up to event 900")
                && lost[2].contains("up to 800 (100 events missing)"),
            "{lost:?}"
        );
        // Only events missing (sheets of a block already reserved).
        assert_eq!(mark.missing(&hw(899, 385, 3, Some(299))).len(), 1);
        // No database at all.
        assert_eq!(mark.missing(&HighWater::default()).len(), 3);
    }

    #[test]
    fn the_mark_only_grows_and_is_written_private_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("fsed.db");
        assert_eq!(mark_path(&db), dir.path().join("fsed.db.mark"));
        let mut mark = Mark::of(&hw(10, 129, 1, None));
        assert_eq!(mark.raise(&hw(5, 129, 1, None)), (false, false));
        assert_eq!(mark.raise(&hw(11, 129, 1, None)), (true, false));
        assert_eq!(mark.raise(&hw(11, 257, 1, None)), (true, true));
        mark.write(&mark_path(&db)).unwrap();
        let mode = std::fs::metadata(mark_path(&db))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Mark::read(&mark_path(&db)).unwrap(), Some(mark));
    }
}
