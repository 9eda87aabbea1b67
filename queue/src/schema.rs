//! The schema and its migrations, applied in order and recorded in
//! `PRAGMA user_version`, each in one transaction.

use rusqlite::{Connection, TransactionBehavior};

use crate::QueueError;

/// Migration `n` brings the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE counters (
    practitioner_id TEXT PRIMARY KEY,
    next_sheet      INTEGER NOT NULL,
    next_lot        INTEGER NOT NULL
);
CREATE TABLE lots (
    id              TEXT PRIMARY KEY,
    practitioner_id TEXT NOT NULL,
    number          INTEGER NOT NULL,
    destination     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('closed','signed','sent','acknowledged','rejected')),
    sheet_count     INTEGER NOT NULL,
    signed_der      BLOB,
    closed_at       TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (practitioner_id, number)
);
CREATE INDEX lots_state ON lots (state);
CREATE TABLE sheets (
    id              INTEGER PRIMARY KEY,
    practitioner_id TEXT NOT NULL,
    number          INTEGER NOT NULL,
    destination     TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    state           TEXT NOT NULL CHECK (state IN ('accepted','in_lot','signed','sent','acknowledged','rejected')),
    lot_id          TEXT REFERENCES lots (id),
    der             BLOB NOT NULL,
    json            TEXT NOT NULL,
    reason          TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (practitioner_id, number)
);
CREATE INDEX sheets_state ON sheets (state, id);
CREATE INDEX sheets_lot ON sheets (lot_id);
CREATE TABLE acks (
    id          INTEGER PRIMARY KEY,
    lot_id      TEXT NOT NULL REFERENCES lots (id),
    status      TEXT NOT NULL,
    der         BLOB NOT NULL,
    received_at TEXT NOT NULL,
    rejections  TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL
);
"#];

/// Applies the migrations the file has not had yet.
pub fn migrate(conn: &mut Connection) -> Result<(), QueueError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version as usize > MIGRATIONS.len() {
        return Err(QueueError::Data(format!("database schema version {version} is newer than this fsed ({})", MIGRATIONS.len())));
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (n + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
