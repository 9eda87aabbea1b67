//! What keeps committed data from being lost unseen: the database's high-water mark (its
//! counters and its last event, which a mark kept outside the file is compared with), the
//! checkpoint that empties the WAL at a clean stop, an online backup checked before it is
//! kept, and a look at a file without writing to it.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension};
use serde_json::json;

use crate::events::{event, stamp};
use crate::open::read_error;
use crate::rows::get_u64;
use crate::{schema, Queue, QueueError, BUSY_TIMEOUT};

/// How long [`Queue::checkpoint_truncate`] waits for readers (a stop must end within the
/// unit's `TimeoutStopSec`).
pub const STOP_CHECKPOINT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// One practitioner's counters as the database holds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PractitionerMark {
    /// The next sheet number a reservation would take: every number below it was reserved.
    pub next_sheet: u64,
    /// The next lot number: every lot number below it was made.
    pub next_lot: u64,
    /// The highest sheet number stored (none: no sheet, or all purged).
    pub last_sheet: Option<u64>,
}

/// How far the database goes: what a lost commit would set back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HighWater {
    /// The id of the last event (every change of state writes one; events are never deleted).
    pub last_event: i64,
    /// Counters per practitioner.
    pub practitioners: BTreeMap<String, PractitionerMark>,
}

impl Queue {
    /// Opens `path` to look at it and nothing else: read-only (a WAL left by a crash is read,
    /// never copied into the file nor removed), checked to be a sound fsed database (with its
    /// application id: a backup, a copy) of a schema this build knows. Only reads may follow.
    pub fn open_to_inspect(path: &Path) -> Result<Queue, QueueError> {
        let q = Queue::open_to_look(path)?;
        q.check_ours(path, true)?;
        if let Err(found) = q.quick_check().map_err(|e| QueueError::Corrupt {
            path: path.to_path_buf(),
            detail: e.into(),
        })? {
            return Err(QueueError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("quick_check: {found}").into(),
            });
        }
        Ok(q)
    }

    /// [`Queue::open_to_inspect`] without `PRAGMA quick_check` (which reads every page): for
    /// a look just before [`Queue::open`], which runs it.
    pub fn open_to_look(path: &Path) -> Result<Queue, QueueError> {
        let conn = crate::integrity::open_read_only(path).map_err(|e| QueueError::Open {
            path: path.to_path_buf(),
            detail: e.into(),
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| read_error(path, e))?;
        let q = Queue { conn };
        q.check_ours(path, false)?;
        Ok(q)
    }

    /// Refuses a file that is another program's database or of a newer schema. A file without
    /// the application id (a new, empty one, or one of schema 1) is left to [`Queue::open`] to
    /// judge, unless `strict` (a backup must be a whole fsed database).
    fn check_ours(&self, path: &Path, strict: bool) -> Result<(), QueueError> {
        let pragma = |name: &str| {
            self.conn
                .pragma_query_value(None, name, |r| r.get::<_, i64>(0))
                .map_err(|e| read_error(path, e))
        };
        let (application_id, version) = (pragma("application_id")?, pragma("user_version")?);
        let ours = application_id == i64::from(schema::APPLICATION_ID) && version >= 1;
        if !ours && (strict || application_id != 0) {
            return Err(QueueError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "not an fsed database (application_id {application_id}, user_version {version})"
                )
                .into(),
            });
        }
        if version > schema::latest_version() {
            return Err(QueueError::SchemaTooNew {
                path: path.to_path_buf(),
                found: version,
                supported: schema::latest_version(),
            });
        }
        Ok(())
    }

    /// How far the database goes: its last event and each practitioner's counters and last
    /// sheet number (index look-ups only: the counters table has a row per practitioner).
    pub fn high_water(&self) -> Result<HighWater, QueueError> {
        let tables: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('events', 'counters', 'sheets')",
            [],
            |r| r.get(0),
        )?;
        if tables < 3 {
            // A new file: nothing in it yet.
            return Ok(HighWater::default());
        }
        let last_event: i64 = self
            .conn
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")?
            .query_row([], |r| r.get(0))?;
        let mut practitioners = BTreeMap::new();
        let mut counters = self
            .conn
            .prepare_cached("SELECT practitioner_id, next_sheet, next_lot FROM counters")?;
        let mut last = self
            .conn
            .prepare_cached("SELECT MAX(number) FROM sheets WHERE practitioner_id = ?1")?;
        let rows = counters.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, get_u64(r, 1)?, get_u64(r, 2)?))
        })?;
        for row in rows {
            let (pid, next_sheet, next_lot) = row?;
            let last_sheet: Option<i64> = last.query_row([&pid], |r| r.get(0))?;
            practitioners.insert(
                pid,
                PractitionerMark {
                    next_sheet,
                    next_lot,
                    last_sheet: last_sheet.and_then(|n| u64::try_from(n).ok()),
                },
            );
        }
        Ok(HighWater {
            last_event,
            practitioners,
        })
    }

    /// Copies the whole WAL into the database file and empties it (`wal_checkpoint(TRUNCATE)`,
    /// waiting up to [`STOP_CHECKPOINT_WAIT`] for readers): afterwards the file alone holds
    /// every commit. Refused ([`QueueError::Data`]) when a reader kept it from finishing.
    pub fn checkpoint_truncate(&self) -> Result<(), QueueError> {
        // Another connection's checkpoint (fsed's checkpointer thread) makes this one answer
        // busy at once, without waiting: it is asked again until the wait is over.
        let deadline = std::time::Instant::now() + STOP_CHECKPOINT_WAIT;
        loop {
            self.conn.busy_timeout(STOP_CHECKPOINT_WAIT)?;
            let done = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                });
            self.conn.busy_timeout(BUSY_TIMEOUT)?;
            let (busy, log, copied) = done?;
            if busy == 0 {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(QueueError::Data(format!(
                    "WAL checkpoint incomplete: a reader kept {} of {log} pages in the WAL",
                    log - copied
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Copies the database as it is now (one consistent snapshot: commits go on meanwhile)
    /// into the new file `dest`, which must exist empty (its creator chose its mode), then
    /// runs `PRAGMA integrity_check` on the copy and checks it is an fsed database. The copy
    /// is synced before this returns, and no WAL or shared-memory file is left beside it.
    /// Returns how far the copy goes and its sheets and lots per state.
    pub fn backup_into(&self, dest: &Path) -> Result<(HighWater, crate::Stats), QueueError> {
        let mut to = Connection::open(dest).map_err(|e| QueueError::Open {
            path: dest.to_path_buf(),
            detail: e.into(),
        })?;
        {
            let backup = rusqlite::backup::Backup::new(&self.conn, &mut to)?;
            // All pages in one step: under WAL this is one read transaction, which a commit
            // never restarts (a step at a time would start again at each commit).
            loop {
                match backup.step(-1)? {
                    rusqlite::backup::StepResult::Done => break,
                    rusqlite::backup::StepResult::More => {}
                    // A lock on the copy or a writer's moment on the source: try again.
                    _ => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        }
        let copy = Queue { conn: to };
        copy.check_ours(dest, true)?;
        let found: Vec<String> = {
            let mut stmt = copy.conn.prepare("PRAGMA integrity_check")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if found != ["ok"] {
            return Err(QueueError::Corrupt {
                path: dest.to_path_buf(),
                detail: format!("integrity_check of the copy: {}", found.join("; ")).into(),
            });
        }
        let held = (copy.high_water()?, copy.stats()?);
        // Everything into the copy's own file, then closed: no -wal or -shm stays beside it.
        copy.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .optional()?;
        copy.conn.close().map_err(|(_, e)| QueueError::from(e))?;
        std::fs::File::open(dest)
            .and_then(|f| f.sync_all())
            .map_err(|e| QueueError::Open {
                path: dest.to_path_buf(),
                detail: crate::Detail::IoAt {
                    step: "cannot sync the copy".into(),
                    source: e,
                },
            })?;
        Ok(held)
    }

    /// Raises practitioners' counters to at least the given next sheet and lot numbers, so
    /// that numbers a lost part of the database had handed out are never handed out again
    /// (after a restore or an accepted loss); one transaction, an event (`counters.raised`)
    /// per practitioner raised. Returns the practitioners raised.
    pub fn raise_counters(
        &mut self,
        at_least: &BTreeMap<String, (u64, u64)>,
    ) -> Result<Vec<String>, QueueError> {
        let tx = self.write()?;
        let at = stamp();
        let mut raised = Vec::new();
        for (pid, &(next_sheet, next_lot)) in at_least {
            let now: Option<(u64, u64)> = tx
                .query_row(
                    "SELECT next_sheet, next_lot FROM counters WHERE practitioner_id = ?1",
                    [pid],
                    |r| Ok((get_u64(r, 0)?, get_u64(r, 1)?)),
                )
                .optional()?;
            let (sheet_now, lot_now) = now.unwrap_or((1, 1));
            let (sheet, lot) = (next_sheet.max(sheet_now), next_lot.max(lot_now));
            if now.is_some() && (sheet, lot) == (sheet_now, lot_now) {
                continue;
            }
            let sheet = i64::try_from(sheet)
                .map_err(|_| QueueError::Data(format!("next sheet number {sheet} too large")))?;
            let lot = i64::try_from(lot)
                .map_err(|_| QueueError::Data(format!("next lot number {lot} too large")))?;
            tx.execute(
                "INSERT INTO counters (practitioner_id, next_sheet, next_lot) VALUES (?1, ?2, ?3)
                 ON CONFLICT (practitioner_id) DO UPDATE SET next_sheet = ?2, next_lot = ?3",
                rusqlite::params![pid, sheet, lot],
            )?;
            event(
                &tx,
                &at,
                "counters.raised",
                pid,
                json!({ "from": { "next_sheet": sheet_now, "next_lot": lot_now },
                        "to": { "next_sheet": sheet, "next_lot": lot } }),
            )?;
            raised.push(pid.clone());
        }
        tx.commit()?;
        Ok(raised)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::PractitionerId;

    #[test]
    fn high_water_backup_and_raised_counters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let mut q = Queue::open(&path).unwrap();
        assert_eq!(q.high_water().unwrap().practitioners.len(), 0);
        // Two blocks of 128 for P1: numbers 1..=256, the next 257.
        assert_eq!(
            q.reserve_sheet_numbers(&PractitionerId::new("P1"), 128)
                .unwrap(),
            1
        );
        assert_eq!(
            q.reserve_sheet_numbers(&PractitionerId::new("P1"), 128)
                .unwrap(),
            129
        );
        let hw = q.high_water().unwrap();
        let p1 = hw.practitioners["P1"];
        assert_eq!((p1.next_sheet, p1.next_lot, p1.last_sheet), (257, 1, None));
        assert!(hw.last_event >= 2, "{hw:?}");

        // The copy holds the same; the source's WAL emptied after.
        let copy = dir.path().join("copy.db");
        std::fs::File::create(&copy).unwrap();
        let (held, _) = q.backup_into(&copy).unwrap();
        assert_eq!(held, hw);
        assert!(!dir.path().join("copy.db-wal").exists());
        let seen = Queue::open_to_inspect(&copy).unwrap();
        assert_eq!(seen.high_water().unwrap(), hw);
        assert_eq!(seen.integrity_check().unwrap(), Ok(()));
        q.checkpoint_truncate().unwrap();
        let wal = dir.path().join("q.db-wal");
        assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);

        // Raised to a mark ahead (P1 to 385, lots to 3; P2 unknown here), never lowered.
        let mut at_least = BTreeMap::new();
        at_least.insert("P1".to_string(), (385, 3));
        at_least.insert("P2".to_string(), (129, 1));
        assert_eq!(q.raise_counters(&at_least).unwrap(), ["P1", "P2"]);
        assert_eq!(q.raise_counters(&at_least).unwrap(), Vec::<String>::new());
        at_least.insert("P1".to_string(), (2, 1));
        assert_eq!(q.raise_counters(&at_least).unwrap(), Vec::<String>::new());
        assert_eq!(
            q.reserve_sheet_numbers(&PractitionerId::new("P1"), 128)
                .unwrap(),
            385
        );
        assert_eq!(
            q.reserve_sheet_numbers(&PractitionerId::new("P2"), 128)
                .unwrap(),
            129
        );

        // Not an fsed database: refused by the inspection.
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert!(matches!(
            Queue::open_to_inspect(&other),
            Err(QueueError::Corrupt { .. })
        ));
    }
}
