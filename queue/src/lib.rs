//! `fse_queue`: the durable store of fsed, one SQLite file in WAL mode with
//! `synchronous=FULL`. It owns the schema and its migrations, the sheet and
//! lot state machines, the ARLs and the event log. Every state change is one
//! `BEGIN IMMEDIATE` transaction together with the event that caused it.

mod schema;
mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fse_formats::ack::{Arl, ArlStatus};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

pub use types::{ArlOutcome, EventRow, Inserted, LotRow, LotState, NewSheet, SheetRow, SheetState, Stats};

/// What the store refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// SQLite failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file is not a sound fsed database; it is left untouched.
    #[error("database {path} is corrupt or unreadable: {detail}; it was not modified — restore it from a backup or move it away")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// No such sheet or lot.
    #[error("not found: {0}")]
    NotFound(String),
    /// A state change the state machine forbids.
    #[error("{subject}: cannot go from {from} to {to}")]
    InvalidTransition {
        /// Sheet or lot.
        subject: String,
        /// Current state.
        from: String,
        /// Asked state.
        to: String,
    },
    /// A stored value is not what the schema promises.
    #[error("stored data: {0}")]
    Data(String),
}

/// The store.
pub struct Queue {
    conn: Connection,
}

const SHEET_COLS: &str = "id, practitioner_id, number, destination, state, lot_id, der, json, reason, created_at, updated_at";
const LOT_COLS: &str = "id, practitioner_id, number, destination, state, sheet_count, signed_der, closed_at, updated_at";

fn sheet_row(r: &Row<'_>) -> rusqlite::Result<SheetRow> {
    let state: String = r.get(4)?;
    Ok(SheetRow {
        id: r.get(0)?,
        practitioner_id: r.get(1)?,
        number: r.get::<_, i64>(2)? as u64,
        destination: r.get(3)?,
        state: state.parse().map_err(|_| rusqlite::Error::InvalidColumnType(4, "state".into(), rusqlite::types::Type::Text))?,
        lot_id: r.get(5)?,
        der: r.get(6)?,
        json: r.get(7)?,
        reason: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

fn lot_row(r: &Row<'_>) -> rusqlite::Result<LotRow> {
    let state: String = r.get(4)?;
    Ok(LotRow {
        id: r.get(0)?,
        practitioner_id: r.get(1)?,
        number: r.get::<_, i64>(2)? as u64,
        destination: r.get(3)?,
        state: state.parse().map_err(|_| rusqlite::Error::InvalidColumnType(4, "state".into(), rusqlite::types::Type::Text))?,
        sheet_count: r.get::<_, i64>(5)? as u64,
        signed_der: r.get(6)?,
        closed_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

fn event(tx: &Transaction<'_>, kind: &str, subject: &str, detail: serde_json::Value) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO events (at, kind, subject, detail) VALUES (strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?1, ?2, ?3)",
        params![kind, subject, detail.to_string()],
    )?;
    Ok(())
}

impl Queue {
    /// Opens (creating when absent) and checks the database, then applies pending migrations.
    pub fn open(path: &Path) -> Result<Queue, QueueError> {
        let corrupt = |e: rusqlite::Error| QueueError::Corrupt { path: path.to_path_buf(), detail: e.to_string() };
        let conn = Connection::open(path).map_err(corrupt)?;
        // Checked before any write: a foreign or damaged file is reported, never rewritten.
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(corrupt)?;
        if check != "ok" {
            return Err(QueueError::Corrupt { path: path.to_path_buf(), detail: check });
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(corrupt)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(QueueError::Corrupt { path: path.to_path_buf(), detail: format!("cannot use WAL (journal mode {mode})") });
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        let mut q = Queue { conn };
        schema::migrate(&mut q.conn)?;
        Ok(q)
    }

    fn write(&mut self) -> Result<Transaction<'_>, QueueError> {
        Ok(self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// A pragma's current value, as text (for checks and diagnosis).
    pub fn pragma(&self, name: &str) -> Result<String, QueueError> {
        if !name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_') {
            return Err(QueueError::Data(format!("bad pragma name {name}")));
        }
        Ok(self.conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, rusqlite::types::Value>(0)).map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })?)
    }

    /// Allocates the next sheet number of a practitioner (1, 2, …), never reused even if unused.
    pub fn allocate_sheet_number(&mut self, practitioner_id: &str) -> Result<u64, QueueError> {
        let tx = self.write()?;
        tx.execute("INSERT INTO counters (practitioner_id, next_sheet, next_lot) VALUES (?1, 1, 1) ON CONFLICT DO NOTHING", [practitioner_id])?;
        let n: i64 = tx.query_row("SELECT next_sheet FROM counters WHERE practitioner_id = ?1", [practitioner_id], |r| r.get(0))?;
        tx.execute("UPDATE counters SET next_sheet = next_sheet + 1 WHERE practitioner_id = ?1", [practitioner_id])?;
        tx.commit()?;
        Ok(n as u64)
    }

    /// The sheet created with this idempotency key, if any.
    pub fn find_by_idempotency_key(&self, key: &str) -> Result<Option<SheetRow>, QueueError> {
        Ok(self.conn.query_row(&format!("SELECT {SHEET_COLS} FROM sheets WHERE idempotency_key = ?1"), [key], sheet_row).optional()?)
    }

    /// Inserts an accepted sheet, committed before it returns; a known idempotency key returns the existing sheet.
    pub fn insert_sheet(&mut self, new: &NewSheet) -> Result<Inserted, QueueError> {
        let tx = self.write()?;
        if let Some(key) = &new.idempotency_key {
            if let Some(row) = tx.query_row(&format!("SELECT {SHEET_COLS} FROM sheets WHERE idempotency_key = ?1"), [key], sheet_row).optional()? {
                return Ok(Inserted::Existing(row));
            }
        }
        tx.execute(
            "INSERT INTO sheets (practitioner_id, number, destination, idempotency_key, state, der, json, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'accepted', ?5, ?6, ?7, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
            params![new.practitioner_id, new.number as i64, new.destination, new.idempotency_key, new.der, new.json, new.created_at],
        )?;
        let id = tx.last_insert_rowid();
        event(&tx, "sheet.accepted", &id.to_string(), serde_json::json!({"practitioner_id": new.practitioner_id, "number": new.number}))?;
        let row = tx.query_row(&format!("SELECT {SHEET_COLS} FROM sheets WHERE id = ?1"), [id], sheet_row)?;
        tx.commit()?;
        Ok(Inserted::New(row))
    }

    /// One sheet.
    pub fn get_sheet(&self, id: i64) -> Result<Option<SheetRow>, QueueError> {
        Ok(self.conn.query_row(&format!("SELECT {SHEET_COLS} FROM sheets WHERE id = ?1"), [id], sheet_row).optional()?)
    }

    /// Sheets by id order, optionally in one state, after `after_id`.
    pub fn list_sheets(&self, state: Option<SheetState>, limit: usize, after_id: i64) -> Result<Vec<SheetRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {SHEET_COLS} FROM sheets WHERE id > ?1 AND (?2 IS NULL OR state = ?2) ORDER BY id LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![after_id, state.map(|s| s.as_str()), limit as i64], sheet_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Closes accepted sheets into lots of at most `max_sheets`, per practitioner and destination.
    pub fn close_lots(&mut self, practitioner_id: Option<&str>, max_sheets: usize, now: &str) -> Result<Vec<LotRow>, QueueError> {
        let max_sheets = max_sheets.max(1);
        let tx = self.write()?;
        let groups: Vec<(String, String)> = {
            let mut stmt = tx.prepare(
                "SELECT DISTINCT practitioner_id, destination FROM sheets WHERE state = 'accepted' AND (?1 IS NULL OR practitioner_id = ?1) ORDER BY practitioner_id, destination",
            )?;
            let rows = stmt.query_map(params![practitioner_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut lots = Vec::new();
        for (pid, dest) in groups {
            let ids: Vec<i64> = {
                let mut stmt = tx.prepare("SELECT id FROM sheets WHERE state = 'accepted' AND practitioner_id = ?1 AND destination = ?2 ORDER BY id")?;
                let rows = stmt.query_map(params![pid, dest], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            for chunk in ids.chunks(max_sheets) {
                tx.execute("INSERT INTO counters (practitioner_id, next_sheet, next_lot) VALUES (?1, 1, 1) ON CONFLICT DO NOTHING", [&pid])?;
                let number: i64 = tx.query_row("SELECT next_lot FROM counters WHERE practitioner_id = ?1", [&pid], |r| r.get(0))?;
                tx.execute("UPDATE counters SET next_lot = next_lot + 1 WHERE practitioner_id = ?1", [&pid])?;
                let lot_id = format!("{pid}-{number:08}");
                tx.execute(
                    "INSERT INTO lots (id, practitioner_id, number, destination, state, sheet_count, closed_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, 'closed', ?5, ?6, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
                    params![lot_id, pid, number, dest, chunk.len() as i64, now],
                )?;
                {
                    let mut upd = tx.prepare_cached("UPDATE sheets SET state = 'in_lot', lot_id = ?1, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?2 AND state = 'accepted'")?;
                    for id in chunk {
                        upd.execute(params![lot_id, id])?;
                    }
                }
                event(&tx, "lot.closed", &lot_id, serde_json::json!({"sheets": chunk.len(), "destination": dest}))?;
                lots.push(tx.query_row(&format!("SELECT {LOT_COLS} FROM lots WHERE id = ?1"), [&lot_id], lot_row)?);
            }
        }
        tx.commit()?;
        Ok(lots)
    }

    fn lots_in(&self, state: LotState, practitioner_id: Option<&str>) -> Result<Vec<LotRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {LOT_COLS} FROM lots WHERE state = ?1 AND (?2 IS NULL OR practitioner_id = ?2) ORDER BY rowid"
        ))?;
        let rows = stmt.query_map(params![state.as_str(), practitioner_id], lot_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Lots waiting for their signature, oldest first.
    pub fn lots_to_sign(&self, practitioner_id: Option<&str>) -> Result<Vec<LotRow>, QueueError> {
        self.lots_in(LotState::Closed, practitioner_id)
    }

    /// Lots signed and not yet sent, oldest first.
    pub fn lots_to_send(&self) -> Result<Vec<LotRow>, QueueError> {
        self.lots_in(LotState::Signed, None)
    }

    /// The sheets of a lot, in the order they were accepted.
    pub fn lot_sheets(&self, lot_id: &str) -> Result<Vec<SheetRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT {SHEET_COLS} FROM sheets WHERE lot_id = ?1 ORDER BY id"))?;
        let rows = stmt.query_map([lot_id], sheet_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One lot.
    pub fn get_lot(&self, lot_id: &str) -> Result<Option<LotRow>, QueueError> {
        Ok(self.conn.query_row(&format!("SELECT {LOT_COLS} FROM lots WHERE id = ?1"), [lot_id], lot_row).optional()?)
    }

    /// The most recent lots, newest first.
    pub fn list_lots(&self, limit: usize) -> Result<Vec<LotRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT {LOT_COLS} FROM lots ORDER BY rowid DESC LIMIT ?1"))?;
        let rows = stmt.query_map([limit as i64], lot_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn lot_state(tx: &Transaction<'_>, lot_id: &str) -> Result<LotState, QueueError> {
        let s: Option<String> = tx.query_row("SELECT state FROM lots WHERE id = ?1", [lot_id], |r| r.get(0)).optional()?;
        s.ok_or_else(|| QueueError::NotFound(format!("lot {lot_id}")))?.parse().map_err(|_| QueueError::Data(format!("lot {lot_id}: unknown state")))
    }

    /// closed → signed, with the signed lot; a lot is never signed twice.
    pub fn mark_lot_signed(&mut self, lot_id: &str, signed_der: &[u8]) -> Result<(), QueueError> {
        let tx = self.write()?;
        let state = Self::lot_state(&tx, lot_id)?;
        if state != LotState::Closed {
            return Err(QueueError::InvalidTransition { subject: format!("lot {lot_id}"), from: state.as_str().into(), to: "signed".into() });
        }
        tx.execute("UPDATE lots SET state = 'signed', signed_der = ?2, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1", params![lot_id, signed_der])?;
        tx.execute("UPDATE sheets SET state = 'signed', updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE lot_id = ?1", [lot_id])?;
        event(&tx, "lot.signed", lot_id, serde_json::json!({}))?;
        tx.commit()?;
        Ok(())
    }

    /// signed → sent; `Ok(false)` when it was already sent or later.
    pub fn mark_lot_sent(&mut self, lot_id: &str) -> Result<bool, QueueError> {
        let tx = self.write()?;
        match Self::lot_state(&tx, lot_id)? {
            LotState::Signed => {}
            LotState::Closed => {
                return Err(QueueError::InvalidTransition { subject: format!("lot {lot_id}"), from: "closed".into(), to: "sent".into() });
            }
            _ => return Ok(false),
        }
        tx.execute("UPDATE lots SET state = 'sent', updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1", [lot_id])?;
        tx.execute("UPDATE sheets SET state = 'sent', updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE lot_id = ?1", [lot_id])?;
        event(&tx, "lot.sent", lot_id, serde_json::json!({}))?;
        tx.commit()?;
        Ok(true)
    }

    /// Applies an ARL once: the lot and its sheets become acknowledged or rejected.
    pub fn record_arl(&mut self, arl: &Arl, der: &[u8]) -> Result<ArlOutcome, QueueError> {
        let tx = self.write()?;
        let state = Self::lot_state(&tx, &arl.lot_id)?;
        match state {
            LotState::Acknowledged | LotState::Rejected => return Ok(ArlOutcome::Duplicate),
            LotState::Closed => {
                return Err(QueueError::InvalidTransition { subject: format!("lot {}", arl.lot_id), from: "closed".into(), to: "acknowledged".into() });
            }
            LotState::Signed | LotState::Sent => {}
        }
        let rejections = serde_json::to_string(&arl.rejections).map_err(|e| QueueError::Data(e.to_string()))?;
        tx.execute(
            "INSERT INTO acks (lot_id, status, der, received_at, rejections, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
            params![arl.lot_id, if arl.status == ArlStatus::Positive { "positive" } else { "negative" }, der, arl.received_at, rejections],
        )?;
        let (lot_state, sheet_state) = match arl.status {
            ArlStatus::Positive => ("acknowledged", "acknowledged"),
            ArlStatus::Negative => ("rejected", "rejected"),
        };
        tx.execute("UPDATE lots SET state = ?2, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1", params![arl.lot_id, lot_state])?;
        tx.execute("UPDATE sheets SET state = ?2, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE lot_id = ?1", params![arl.lot_id, sheet_state])?;
        for r in &arl.rejections {
            let reason = format!("{}: {}", r.code, r.reason);
            match r.sheet_number {
                Some(n) => tx.execute("UPDATE sheets SET reason = ?3 WHERE lot_id = ?1 AND number = ?2", params![arl.lot_id, n as i64, reason])?,
                None => tx.execute("UPDATE sheets SET reason = ?2 WHERE lot_id = ?1", params![arl.lot_id, reason])?,
            };
        }
        event(&tx, if arl.status == ArlStatus::Positive { "arl.positive" } else { "arl.negative" }, &arl.lot_id, serde_json::json!({"rejections": arl.rejections.len()}))?;
        tx.commit()?;
        Ok(ArlOutcome::Applied)
    }

    /// Counts of sheets and lots per state.
    pub fn stats(&self) -> Result<Stats, QueueError> {
        let count = |sql: &str| -> Result<BTreeMap<String, u64>, QueueError> {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        Ok(Stats {
            sheets: count("SELECT state, COUNT(*) FROM sheets GROUP BY state")?,
            lots: count("SELECT state, COUNT(*) FROM lots GROUP BY state")?,
        })
    }

    /// Events after `after_id`, oldest first.
    pub fn events_since(&self, after_id: i64, limit: usize) -> Result<Vec<EventRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached("SELECT id, at, kind, subject, detail FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")?;
        let rows = stmt.query_map(params![after_id, limit as i64], |r| {
            Ok(EventRow { id: r.get(0)?, at: r.get(1)?, kind: r.get(2)?, subject: r.get(3)?, detail: r.get(4)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests;
