//! The event log and row time stamps: the stamp every transaction writes, the event row
//! that records each change, and reading the log back.

use std::time::Duration;

use rusqlite::{params, Connection};

use rusqlite::types::Type;

use crate::rows::limit_i64;
use crate::{EventRow, Queue, QueueError, Stamp, TimeText};

/// The transaction's timestamp: every row it touches and its event share it. Now, as every
/// row's time stamp's text: UTC to the millisecond, `2026-11-30T09:42:10.123Z` (the
/// text SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ','now')` gives, made without a query and
/// without an allocation).
pub(crate) fn stamp() -> TimeText<24> {
    Stamp::now().text()
}

/// The row time stamp of `age` ago: what a row stamped at or before it is as old as
/// ([`Stamp::ago`]).
pub fn stamp_ago(age: Duration) -> Stamp {
    Stamp::ago(age)
}

pub(crate) fn event(
    tx: &Connection,
    at: &str,
    kind: &str,
    subject: &str,
    detail: serde_json::Value,
) -> rusqlite::Result<()> {
    event_text(tx, at, kind, subject, &detail.to_string())
}

/// An event row whose detail is already JSON text.
pub(crate) fn event_text(
    tx: &Connection,
    at: &str,
    kind: &str,
    subject: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO events (at, kind, subject, detail) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![at, kind, subject, detail])?;
    Ok(())
}

impl Queue {
    /// Events with an id above `after_id`, oldest first (newest last), at most `limit`.
    pub fn events_since(&self, after_id: i64, limit: usize) -> Result<Vec<EventRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, at, kind, subject, detail FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after_id, limit_i64(limit)], |r| {
            let detail: String = r.get(4)?;
            Ok(EventRow {
                id: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                subject: r.get(3)?,
                detail: serde_json::from_str(&detail).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(4, Type::Text, Box::new(e))
                })?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
