//! Opening the file (its checks, settings and migrations), further connections, the
//! write transaction every change runs in, pragmas, checkpoints and SQLite's own checks.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};

use crate::{schema, Queue, QueueError, APPLICATION_ID, BUSY_TIMEOUT};

/// What every connection to the queue runs with: `synchronous=FULL`, foreign keys, and 32 MiB
/// of page cache (a day's sheets and their indexes stay in memory, so a commit writes its
/// pages without reading any back).
fn connection_settings(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "cache_size", -32_768)
}

/// Maps an error met while reading an existing file at open.
pub(crate) fn read_error(path: &Path, e: rusqlite::Error) -> QueueError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => QueueError::Corrupt {
            path: path.to_path_buf(),
            detail: e.into(),
        },
        _ => QueueError::Open {
            path: path.to_path_buf(),
            detail: e.into(),
        },
    }
}

impl Queue {
    /// Opens the database (creating it when absent), checks it, sets WAL,
    /// `synchronous=FULL`, foreign keys and the busy timeout, then applies
    /// pending migrations. A file that fails `PRAGMA quick_check`, is not
    /// SQLite, or is another program's database gives
    /// [`QueueError::Corrupt`]; one from a newer fsed gives
    /// [`QueueError::SchemaTooNew`]; in both cases nothing was written to it.
    pub fn open(path: &Path) -> Result<Queue, QueueError> {
        let open_error = |e: rusqlite::Error| QueueError::Open {
            path: path.to_path_buf(),
            detail: e.into(),
        };
        let conn = Connection::open(path).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;

        // Read-only checks first: a damaged or foreign file is reported, never rewritten.
        let problems: Vec<String> = {
            let mut stmt = conn
                .prepare("PRAGMA quick_check")
                .map_err(|e| read_error(path, e))?;
            let rows = stmt
                .query_map([], |r| r.get(0))
                .map_err(|e| read_error(path, e))?;
            rows.collect::<Result<_, _>>()
                .map_err(|e| read_error(path, e))?
        };
        if problems != ["ok"] {
            let detail = problems
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            return Err(QueueError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("quick_check: {detail}").into(),
            });
        }
        let pragma_i64 = |name: &str| {
            conn.pragma_query_value(None, name, |r| r.get::<_, i64>(0))
                .map_err(|e| read_error(path, e))
        };
        let application_id = pragma_i64("application_id")?;
        let version = pragma_i64("user_version")?;
        let objects: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(|e| read_error(path, e))?;
        let has_tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('sheets', 'lots', 'events')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| read_error(path, e))?;
        let ours = application_id == i64::from(APPLICATION_ID)
            // A new (or empty) file.
            || (application_id == 0 && version == 0 && objects == 0)
            // Written before the application id was set (schema version 1).
            || (application_id == 0 && version >= 1 && has_tables == 3);
        if !ours {
            return Err(QueueError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "not an fsed database (application_id {application_id}, user_version {version}, {objects} schema objects)"
                ).into(),
            });
        }
        if version > schema::latest_version() {
            return Err(QueueError::SchemaTooNew {
                path: path.to_path_buf(),
                found: version,
                supported: schema::latest_version(),
            });
        }

        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(open_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(QueueError::Open {
                path: path.to_path_buf(),
                detail: format!("cannot use WAL here (journal mode stays {mode})").into(),
            });
        }
        connection_settings(&conn).map_err(open_error)?;
        let synchronous: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .map_err(open_error)?;
        let foreign_keys: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .map_err(open_error)?;
        if synchronous != 2 || foreign_keys != 1 {
            return Err(QueueError::Open {
                path: path.to_path_buf(),
                detail: format!(
                    "synchronous={synchronous} foreign_keys={foreign_keys} (want 2 and 1)"
                )
                .into(),
            });
        }
        let mut q = Queue { conn };
        schema::migrate(&mut q.conn)?;
        Ok(q)
    }

    /// Another connection to this queue's file, which [`Queue::open`] has already checked and
    /// migrated: for reads beside this connection (WAL readers see every commit and never
    /// wait for a writer), without checking the file again.
    pub fn another_connection(&self) -> Result<Queue, QueueError> {
        let path =
            self.conn.path().filter(|p| !p.is_empty()).ok_or_else(|| {
                QueueError::Data("an in-memory queue has no other connection".into())
            })?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        connection_settings(&conn)?;
        Ok(Queue { conn })
    }

    /// Copies what the WAL holds into the database file as far as it can without waiting for
    /// a reader or the writer (a PASSIVE checkpoint).
    pub fn checkpoint_passive(&self) -> Result<(), QueueError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Gives back the memory this connection's page cache holds (`PRAGMA shrink_memory`): an
    /// idle daemon need not keep a busy hour's pages. The pages are read again when needed.
    pub fn release_memory(&self) -> Result<(), QueueError> {
        self.conn.execute_batch("PRAGMA shrink_memory")?;
        Ok(())
    }

    /// Caps this connection's page cache at `kib` KiB (SQLite's `cache_size`). A reading
    /// connection gains little from a large one in WAL mode: SQLite empties it whenever another
    /// connection has committed since its last read.
    pub fn set_cache_kib(&self, kib: u32) -> Result<(), QueueError> {
        self.conn
            .pragma_update(None, "cache_size", -i64::from(kib))?;
        Ok(())
    }

    /// How many WAL pages make a commit on this connection checkpoint by itself (SQLite's
    /// `wal_autocheckpoint`; 0: never).
    pub fn set_auto_checkpoint(&self, pages: u32) -> Result<(), QueueError> {
        self.conn.pragma_update(None, "wal_autocheckpoint", pages)?;
        Ok(())
    }

    pub(crate) fn write(&mut self) -> Result<Transaction<'_>, QueueError> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// A pragma's current value on this connection, as text (`journal_mode`
    /// gives `wal`, `synchronous` gives `2` for FULL), for checks and diagnosis.
    pub fn pragma(&self, name: &str) -> Result<String, QueueError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_') {
            return Err(QueueError::Data(format!("bad pragma name {name:?}")));
        }
        let value = self
            .conn
            .pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0))?;
        Ok(match value {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
    }

    /// Runs SQLite's full `PRAGMA integrity_check` (every page, index and constraint; it
    /// reads the whole file): `Ok(())` when the file is sound, else what it found (at most
    /// 100 lines).
    pub fn integrity_check(&self) -> Result<Result<(), String>, QueueError> {
        self.pragma_check("PRAGMA integrity_check(100)")
    }

    /// Runs SQLite's `PRAGMA quick_check`: `Ok(())` when the file is sound, else what it found.
    pub fn quick_check(&self) -> Result<Result<(), String>, QueueError> {
        self.pragma_check("PRAGMA quick_check")
    }

    /// A check pragma's verdict: `Ok(())` when its one line is `ok`, else its lines joined.
    fn pragma_check(&self, sql: &str) -> Result<Result<(), String>, QueueError> {
        let mut stmt = self.conn.prepare(sql)?;
        let found: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(if found.len() == 1 && found[0] == "ok" {
            Ok(())
        } else {
            Err(found.join("; "))
        })
    }
}
