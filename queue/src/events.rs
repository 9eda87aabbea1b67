//! The event log and row time stamps: the stamp every transaction writes, the event row
//! that records each change, and reading the log back.

use std::time::Duration;

use rusqlite::{params, Connection};

use crate::rows::limit_i64;
use crate::{EventRow, Queue, QueueError};

/// The transaction's timestamp: every row it touches and its event share it. Now, as every
/// row's time stamp: UTC to the millisecond, `2026-11-30T09:42:10.123Z` (the
/// text SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ','now')` gives, made without a query).
pub(crate) fn stamp() -> String {
    stamp_of(chrono::Utc::now())
}

/// The row time stamp of `age` ago: what a row stamped at or before it is as old as.
pub fn stamp_ago(age: Duration) -> String {
    let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    stamp_of(
        chrono::Utc::now()
            .checked_sub_signed(age)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
    )
}

/// `at` as a row time stamp, written digit by digit: chrono's formatter costs more than the
/// row it stamps.
pub(crate) fn stamp_of(at: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};
    const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";
    let Ok(year) = u32::try_from(at.year()) else {
        return at.format(FORMAT).to_string();
    };
    if year > 9999 {
        return at.format(FORMAT).to_string();
    }
    fn put(b: &mut [u8; 24], at: usize, mut value: u32, width: usize) {
        for i in (at..at + width).rev() {
            // A digit: `value % 10` is below 10.
            b[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    let mut b = *b"0000-00-00T00:00:00.000Z";
    put(&mut b, 0, year, 4);
    put(&mut b, 5, at.month(), 2);
    put(&mut b, 8, at.day(), 2);
    put(&mut b, 11, at.hour(), 2);
    put(&mut b, 14, at.minute(), 2);
    put(&mut b, 17, at.second(), 2);
    // During a leap second chrono counts the nanoseconds past 10^9; the stamp stays at .999.
    put(&mut b, 20, (at.nanosecond() / 1_000_000).min(999), 3);
    b.iter().map(|&c| char::from(c)).collect()
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
            Ok(EventRow {
                id: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                subject: r.get(3)?,
                detail: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
