//! `fse_queue`: the durable store of fsed, one SQLite file in WAL mode with
//! `synchronous=FULL`. It owns the schema and its migrations, the sheet and
//! lot state machines, the sheet and lot numbering, the ARLs and the event
//! log. Every state change is one `BEGIN IMMEDIATE` transaction together
//! with the event row that records it, committed (and, by
//! `synchronous=FULL`, on disk) before the call returns.
//!
//! A file that is not a sound fsed database (damaged, not SQLite, another
//! program's database, a newer schema) is reported and never written to.

mod durable;
mod integrity;
mod schema;
mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use fse_formats::ack::{Arl, ArlStatus, PaymentOutcome, PaymentReturn};
use rusqlite::types::Type;
use rusqlite::{
    params, Connection, ErrorCode, OptionalExtension, Row, Transaction, TransactionBehavior,
};
use serde_json::json;

pub use durable::{HighWater, PractitionerMark};
pub use integrity::{
    check_file, dre_lot_checksum, lot_checksum, sheet_checksum, DamagedRow, FileCheck, VerifyReport,
};
pub use schema::APPLICATION_ID;
pub use types::{
    AckRow, ArlAlarm, ArlOutcome, Backlog, DeadlineAlarm, EventRow, GroupOutcome, GroupWrite,
    GroupWritesOutcome, GroupWritten, Inserted, LotRow, LotState, NewSheet, ParticipationCaps,
    PaymentRow, PaymentsApplied, PfRecord, ResendStats, SheetRow, SheetState, Stats, UnknownState,
    Withheld,
};

/// How long a call waits for another connection's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the store refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// SQLite failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file could not be opened or set up (missing directory, permissions,
    /// a file system without WAL support…).
    #[error("cannot open database {path}: {detail}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The file is damaged, not SQLite, or another program's database; it
    /// was not modified.
    #[error(
        "database {path} is corrupt or not an fsed database: {detail}; it was not modified — \
         restore it from a backup or move it away"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite said, or why the file is not ours.
        detail: String,
    },
    /// The file was written by a newer fsed; it was not modified.
    #[error(
        "database {path} has schema version {found}, newer than this fsed knows ({supported}); \
         it was not modified — run a newer fsed"
    )]
    SchemaTooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// A stored row that is damaged (its checksum does not match its bytes, or a column no
    /// longer decodes): it is not served.
    #[error("stored {} {} is damaged: {}", .0.kind, .0.id, .0.reason)]
    Damaged(DamagedRow),
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
    /// The change would break a uniqueness rule (a sheet number already used).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A value given or stored is not what the schema promises.
    #[error("invalid data: {0}")]
    Data(String),
    /// The participation a new sheet withholds no longer fits the caps: another sheet of the
    /// same beneficiary was committed after its history was read. Nothing was inserted; the
    /// sheet is to be priced again on the history as it is now.
    #[error("participation cap: {0}")]
    OverCap(String),
    /// The practitioner's idempotency key was already used with another request (its hash
    /// differs): nothing was inserted.
    #[error(
        "idempotency key {key:?} of practitioner {practitioner_id} was already used for another \
         request (sheet {sheet_id}): use a new key for a new request"
    )]
    IdempotencyKeyReused {
        /// The key.
        key: String,
        /// Its practitioner.
        practitioner_id: String,
        /// The sheet made with it first.
        sheet_id: i64,
    },
}

/// The store: one connection to the SQLite file.
pub struct Queue {
    conn: Connection,
}

/// Which per-practitioner counter to advance.
#[derive(Clone, Copy)]
enum Counter {
    Sheet,
    Lot,
}

/// Where [`SHEET_COLS`] are read: a sheet and its body (no column name is in both tables).
const SHEETS_WITH_BODIES: &str = "sheets JOIN sheet_bodies ON sheet_id = id";

const SHEET_COLS: &str = "id, practitioner_id, number, destination, state, lot_id, der, reason, created_at, updated_at, dre, checksum";
const LOT_COLS: &str = "id, practitioner_id, number, destination, state, sheet_count, signed_der, closed_at, updated_at, cms, checksum";

fn get_u64(r: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    let v: i64 = r.get(i)?;
    u64::try_from(v)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Integer, Box::new(e)))
}

fn get_state<T: FromStr<Err = UnknownState>>(r: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    s.parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

fn sheet_row(r: &Row<'_>) -> rusqlite::Result<SheetRow> {
    let id: i64 = r.get(0)?;
    let der: Vec<u8> = r.get(6)?;
    let dre: Option<Vec<u8>> = r.get(10)?;
    let stored: Option<Vec<u8>> = r.get(11)?;
    integrity::check(
        stored.as_deref(),
        &integrity::sheet_checksum(id, &der, dre.as_deref()),
    )
    .map_err(|m| integrity::mismatch_error(11, m))?;
    let json = sheet_json(&der)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(6, Type::Blob, e.into()))?;
    Ok(SheetRow {
        id,
        practitioner_id: r.get(1)?,
        number: get_u64(r, 2)?,
        destination: r.get(3)?,
        state: get_state(r, 4)?,
        lot_id: r.get(5)?,
        der,
        json,
        reason: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

/// The JSON of the sheet `der` holds (the file keeps the DER only: it decodes to the very
/// sheet it was encoded from, and a sheet is read far less often than it is written).
fn sheet_json(der: &[u8]) -> Result<String, String> {
    let sheet =
        fse_formats::fse::CareSheet::from_der(der).map_err(|e| format!("stored sheet: {e}"))?;
    serde_json::to_string(&sheet).map_err(|e| format!("stored sheet: {e}"))
}

fn lot_row(r: &Row<'_>) -> rusqlite::Result<LotRow> {
    let id: String = r.get(0)?;
    let signed_der: Option<Vec<u8>> = r.get(6)?;
    let cms: Option<Vec<u8>> = r.get(9)?;
    let stored: Option<Vec<u8>> = r.get(10)?;
    // A lot gets its checksum when it is signed; before that it holds no body.
    if signed_der.is_some() || cms.is_some() || stored.is_some() {
        integrity::check(
            stored.as_deref(),
            &integrity::lot_checksum(&id, signed_der.as_deref(), cms.as_deref()),
        )
        .map_err(|m| integrity::mismatch_error(10, m))?;
    }
    Ok(LotRow {
        id,
        practitioner_id: r.get(1)?,
        number: get_u64(r, 2)?,
        destination: r.get(3)?,
        state: get_state(r, 4)?,
        sheet_count: get_u64(r, 5)?,
        signed_der,
        closed_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

/// `e` as the store's error for row `id` of `kind`: [`QueueError::Damaged`] when the row's
/// values are damaged, else the SQLite error.
fn row_error(kind: &'static str, id: impl ToString, e: rusqlite::Error) -> QueueError {
    if integrity::is_damage(&e) {
        QueueError::Damaged(DamagedRow {
            kind,
            id: id.to_string(),
            reason: integrity::damage_reason(&e),
        })
    } else {
        e.into()
    }
}

/// Reads a row with `read`, or, when its values are damaged, says which row (its id read
/// from column 0 as `I`) and why, so that one damaged row does not fail a whole listing.
fn checked_row<T, I: rusqlite::types::FromSql + ToString>(
    kind: &'static str,
    r: &Row<'_>,
    read: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Result<T, DamagedRow>> {
    match read(r) {
        Ok(row) => Ok(Ok(row)),
        Err(e) if integrity::is_damage(&e) => {
            // The id is the row's key (a rowid for sheets): still readable when the rest
            // is not, or the damage is the SQLite error itself.
            let id: I = r.get(0)?;
            Ok(Err(DamagedRow {
                kind,
                id: id.to_string(),
                reason: integrity::damage_reason(&e),
            }))
        }
        Err(e) => Err(e),
    }
}

fn to_i64(what: &str, v: u64) -> Result<i64, QueueError> {
    i64::try_from(v).map_err(|_| QueueError::Data(format!("{what} {v} is too large")))
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The practitioners and destinations with open sheets (`?1`: one practitioner, or all).
const OPEN_GROUPS: &str = "SELECT DISTINCT practitioner_id, destination FROM sheets
     WHERE state = 'accepted' AND lot_id IS NULL AND (?1 IS NULL OR practitioner_id = ?1)
     ORDER BY practitioner_id, destination";

/// The open sheets of practitioner `?1` for destination `?2`, oldest first. They are found
/// through `sheets_accepted`: the `+` keeps the planner, which has no statistics, off the
/// index by practitioner, which holds every sheet ever made.
const OPEN_SHEETS_OF_GROUP: &str = "SELECT id, number FROM sheets
     WHERE state = 'accepted' AND lot_id IS NULL AND +practitioner_id = ?1 AND destination = ?2
     ORDER BY id";

/// Moves the open sheets of practitioner `?3` for destination `?4` with ids `?5` to `?6`
/// into lot `?1` at `?2`.
const MOVE_INTO_LOT: &str = "UPDATE sheets SET state = 'in_lot', lot_id = ?1, updated_at = ?2
     WHERE state = 'accepted' AND lot_id IS NULL AND +practitioner_id = ?3
       AND destination = ?4 AND id BETWEEN ?5 AND ?6";

/// Moves the sheets of lot `?1` in state `?2` to state `?3` at `?4` (found through
/// `sheets_lot`).
const MOVE_SHEETS: &str =
    "UPDATE sheets SET state = ?3, updated_at = ?4 WHERE lot_id = ?1 AND state = ?2";

/// A new sheet's row; an idempotency key the practitioner already used inserts nothing.
const INSERT_SHEET: &str = "INSERT INTO sheets (practitioner_id, number, destination, idempotency_key, request_hash, state, created_at, updated_at, deadline)
     VALUES (?1, ?2, ?3, ?4, ?5, 'accepted', ?6, ?7, ?8)
     ON CONFLICT (idempotency_key, practitioner_id) WHERE idempotency_key IS NOT NULL DO NOTHING";

/// The sheet practitioner `?2` made with idempotency key `?1`, and the hash of its request.
const SHEET_BY_KEY: &str = "SELECT id, practitioner_id, number, destination, state, lot_id, der, reason, created_at, updated_at, dre, checksum, request_hash
     FROM sheets JOIN sheet_bodies ON sheet_id = id WHERE idempotency_key = ?1 AND practitioner_id = ?2";

/// The sheets of every practitioner made with idempotency key `?1`, and the hashes of their
/// requests.
const SHEETS_BY_KEY: &str = "SELECT id, practitioner_id, number, destination, state, lot_id, der, reason, created_at, updated_at, dre, checksum, request_hash
     FROM sheets JOIN sheet_bodies ON sheet_id = id WHERE idempotency_key = ?1";

/// A sheet row ([`SHEET_COLS`]) followed by its request's hash.
fn sheet_row_and_hash(r: &Row<'_>) -> rusqlite::Result<(SheetRow, Option<Vec<u8>>)> {
    Ok((sheet_row(r)?, r.get(12)?))
}

/// The sheet `practitioner_id` made with idempotency key `key`, refused
/// ([`QueueError::IdempotencyKeyReused`]) when it was made for another request than the one
/// hashed `request_hash` (see [`other_request`]).
fn sheet_by_key(
    conn: &Connection,
    key: &str,
    practitioner_id: &str,
    request_hash: Option<&[u8; 32]>,
) -> Result<Option<SheetRow>, QueueError> {
    let found = conn
        .prepare_cached(SHEET_BY_KEY)?
        .query_row(params![key, practitioner_id], |r| {
            checked_row::<_, i64>("sheet", r, sheet_row_and_hash)
        })
        .optional()?
        .transpose()
        .map_err(QueueError::Damaged)?;
    match found {
        Some((row, stored)) if other_request(stored.as_deref(), request_hash) => {
            Err(QueueError::IdempotencyKeyReused {
                key: key.to_string(),
                practitioner_id: practitioner_id.to_string(),
                sheet_id: row.id,
            })
        }
        found => Ok(found.map(|(row, _)| row)),
    }
}

/// Whether a stored request hash and a new one name different requests (a hash unknown on
/// either side differs from nothing).
fn other_request(stored: Option<&[u8]>, new: Option<&[u8; 32]>) -> bool {
    matches!((stored, new), (Some(a), Some(b)) if a != b.as_slice())
}

/// How many sheets wait to be sent, the oldest's creation and the nearest deadline: the open
/// sheets, and those of the lots closed or signed, each found through an index (this runs for
/// every status line and `system.doctor`; the sheets sent are most of the table).
const BACKLOG: &str = "SELECT COUNT(*), MIN(created_at), MIN(deadline) FROM (
     SELECT created_at, deadline FROM sheets WHERE state = 'accepted'
     UNION ALL
     SELECT s.created_at, s.deadline FROM lots l JOIN sheets s ON s.lot_id = l.id
      WHERE l.state IN ('closed', 'signed') AND s.state IN ('in_lot', 'signed'))";

/// The transaction's timestamp: every row it touches and its event share it. Now, as every
/// row's time stamp: UTC to the millisecond, `2026-11-30T09:42:10.123Z` (the
/// text SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ','now')` gives, made without a query).
fn stamp() -> String {
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
fn stamp_of(at: chrono::DateTime<chrono::Utc>) -> String {
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

fn event(
    tx: &Connection,
    at: &str,
    kind: &str,
    subject: &str,
    detail: serde_json::Value,
) -> rusqlite::Result<()> {
    event_text(tx, at, kind, subject, &detail.to_string())
}

/// An event row whose detail is already JSON text.
fn event_text(
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

/// Takes the next value of a practitioner's counter (1, 2, …).
fn take_counter(
    tx: &Connection,
    practitioner_id: &str,
    counter: Counter,
) -> Result<u64, QueueError> {
    let column = match counter {
        Counter::Sheet => "next_sheet",
        Counter::Lot => "next_lot",
    };
    tx.execute(
        "INSERT INTO counters (practitioner_id, next_sheet, next_lot) VALUES (?1, 1, 1) ON CONFLICT DO NOTHING",
        [practitioner_id],
    )?;
    let n: i64 = tx.query_row(
        &format!("SELECT {column} FROM counters WHERE practitioner_id = ?1"),
        [practitioner_id],
        |r| r.get(0),
    )?;
    tx.execute(
        &format!("UPDATE counters SET {column} = {column} + 1 WHERE practitioner_id = ?1"),
        [practitioner_id],
    )?;
    u64::try_from(n)
        .map_err(|_| QueueError::Data(format!("counter {column} of {practitioner_id} is {n}")))
}

/// Reserves `count` sheet numbers within `tx`; returns the first.
fn reserve_in(tx: &Connection, practitioner_id: &str, count: u64) -> Result<u64, QueueError> {
    if count == 0 {
        return Err(QueueError::Data("reserve at least one sheet number".into()));
    }
    let at = stamp();
    let first = take_counter(tx, practitioner_id, Counter::Sheet)?;
    tx.prepare_cached(
        "UPDATE counters SET next_sheet = next_sheet + ?2 WHERE practitioner_id = ?1",
    )?
    .execute(params![
        practitioner_id,
        to_i64("sheet numbers", count - 1)?
    ])?;
    event(
        tx,
        &at,
        "sheet.numbers",
        practitioner_id,
        json!({ "from": first, "to": first + count - 1 }),
    )?;
    Ok(first)
}

/// The participation forfaitaire withheld from `beneficiary` on care dates `from` to `until`
/// (`YYYYMMDD`, inclusive), kept sheets included, summed per date and professional, in date
/// order. Two plain range reads through the (beneficiary, care_date) indexes, summed here: a
/// UNION with GROUP BY costs SQLite a sorter per call, and this runs for every sheet.
fn participation_in(
    conn: &Connection,
    beneficiary: &str,
    from: &str,
    until: &str,
) -> Result<Vec<PfRecord>, QueueError> {
    type Tally = (Option<u32>, u64);
    let mut by_date: BTreeMap<(String, Option<String>), Tally> = BTreeMap::new();
    for sql in [
        "SELECT care_date, professional, acts, cents FROM participation
         WHERE beneficiary = ?1 AND care_date BETWEEN ?2 AND ?3",
        "SELECT care_date, professional, acts, cents FROM participation_kept
         WHERE beneficiary = ?1 AND care_date BETWEEN ?2 AND ?3",
    ] {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params![beneficiary, from, until])?;
        while let Some(row) = rows.next()? {
            let (date, professional): (String, Option<String>) = (row.get(0)?, row.get(1)?);
            let (acts, cents): (Option<i64>, i64) = (row.get(2)?, row.get(3)?);
            let cents = u64::try_from(cents)
                .map_err(|_| QueueError::Data(format!("negative participation on {date}")))?;
            // The CHECK keeps `acts` above 0; a count past u32 is as full as can be.
            let acts = acts.map(|a| u32::try_from(a).unwrap_or(u32::MAX));
            let (sum_acts, sum_cents) = by_date.entry((date, professional)).or_insert((Some(0), 0));
            *sum_acts = sum_acts.zip(acts).map(|(a, b)| a.saturating_add(b));
            *sum_cents = sum_cents.saturating_add(cents);
        }
    }
    Ok(by_date
        .into_iter()
        .map(|((care_date, professional), (acts, cents))| PfRecord {
            care_date,
            professional,
            acts,
            cents,
        })
        .collect())
}

/// Refuses (`OverCap`) a sheet whose participation, added to what the file already holds for
/// its beneficiary, would pass the caps it was priced under: the participations of a day with
/// its practitioner (lines of an unknown professional count against every one, lines of an
/// unknown count as a full day), the cents of a year with everyone.
fn check_caps(tx: &Connection, new: &NewSheet) -> Result<(), QueueError> {
    let Some(caps) = new.participation_caps else {
        return Ok(());
    };
    // The history of each year the sheet withholds in, read once.
    let mut years: BTreeMap<&str, Vec<PfRecord>> = BTreeMap::new();
    for w in &new.participation {
        if w.cents == 0 {
            continue;
        }
        let (date, year) = (
            w.care_date.as_str(),
            w.care_date.get(..4).unwrap_or_default(),
        );
        let history = match years.entry(year) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let (first, last) = (format!("{year}0101"), format!("{year}1231"));
                e.insert(participation_in(tx, &new.beneficiary_key, &first, &last)?)
            }
        };
        let mine = |p: &Option<String>| p.as_deref().is_none_or(|p| p == new.practitioner_id);
        let day = history
            .iter()
            .filter(|r| r.care_date == date && mine(&r.professional))
            .map(|r| r.acts.unwrap_or(u32::MAX))
            .chain(
                new.participation
                    .iter()
                    .filter(|x| x.care_date == date)
                    .map(|x| x.acts),
            )
            .fold(0u32, u32::saturating_add);
        if day > caps.per_day_per_professional {
            return Err(QueueError::OverCap(format!(
                "{day} participations on {date} for this beneficiary with practitioner {}, over \
                 the day's cap of {}",
                new.practitioner_id, caps.per_day_per_professional
            )));
        }
        let in_year = history
            .iter()
            .map(|r| r.cents)
            .chain(
                new.participation
                    .iter()
                    .filter(|x| x.care_date.get(..4) == Some(year))
                    .map(|x| x.cents),
            )
            .fold(0u64, u64::saturating_add);
        if in_year > caps.per_year_cents {
            return Err(QueueError::OverCap(format!(
                "{} cents in {year} for this beneficiary, over the year's cap of {}",
                in_year, caps.per_year_cents
            )));
        }
    }
    Ok(())
}

/// Inserts one sheet within `tx` (see [`Queue::insert_sheet`]).
fn insert_in(tx: &Connection, new: &NewSheet) -> Result<Inserted, QueueError> {
    let number = to_i64("sheet number", new.number)?;
    let at = stamp();
    // A key already used inserts nothing (and the sheet made with it is the answer); any
    // other conflict is an error.
    // The hash is kept only with a key: it is what a retry is compared on.
    let hash = new
        .idempotency_key
        .as_ref()
        .and(new.request_hash.as_ref())
        .map(|h| h.as_slice());
    let inserted = tx.prepare_cached(INSERT_SHEET)?.execute(params![
        new.practitioner_id,
        number,
        new.destination,
        new.idempotency_key,
        hash,
        new.created_at,
        at,
        new.deadline
    ]);
    match inserted {
        Ok(0) => {
            let key = new.idempotency_key.as_deref().ok_or_else(|| {
                QueueError::Data("a sheet without idempotency key inserted nothing".into())
            })?;
            let existing = sheet_by_key(tx, key, &new.practitioner_id, new.request_hash.as_ref())?
                .ok_or_else(|| {
                    QueueError::Data(format!("no sheet holds the idempotency key {key:?}"))
                })?;
            return Ok(Inserted::Existing(existing));
        }
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            return Err(QueueError::Conflict(format!(
                "sheet number {} of practitioner {} is already used",
                new.number, new.practitioner_id
            )));
        }
        Err(e) => return Err(e.into()),
    }
    // A new sheet (a retry of one already made has its answer above, whatever the caps say
    // now): before its participation is written, the caps hold against every sheet committed
    // and every sheet before this one in its group. On a refusal the caller rolls the row
    // back with the transaction.
    check_caps(tx, new)?;
    let id = tx.last_insert_rowid();
    let checksum = integrity::sheet_checksum(id, &new.der, new.dre.as_deref());
    tx.prepare_cached(
        "INSERT INTO sheet_bodies (sheet_id, der, dre, checksum) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, new.der, new.dre, checksum.as_slice()])?;
    for w in new.participation.iter().filter(|w| w.cents > 0) {
        tx.prepare_cached(
            "INSERT INTO participation (beneficiary, care_date, cents, sheet_id, professional, acts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            new.beneficiary_key,
            w.care_date,
            to_i64("participation", w.cents)?,
            id,
            new.practitioner_id,
            w.acts.max(1)
        ])?;
    }
    tx.prepare_cached(
        "INSERT INTO counters (practitioner_id, next_sheet, next_lot) VALUES (?1, ?2 + 1, 1)
         ON CONFLICT (practitioner_id) DO UPDATE SET next_sheet = max(next_sheet, excluded.next_sheet)",
    )?
    .execute(params![new.practitioner_id, number])?;
    // Written straight to text (members in the order a `json!` object sorts them): this runs
    // for every sheet.
    #[derive(serde::Serialize)]
    struct Accepted<'a> {
        destination: &'a str,
        idempotency_key: Option<&'a str>,
        number: u64,
        practitioner_id: &'a str,
    }
    let detail = serde_json::to_string(&Accepted {
        destination: &new.destination,
        idempotency_key: new.idempotency_key.as_deref(),
        number: new.number,
        practitioner_id: &new.practitioner_id,
    })
    .map_err(|e| QueueError::Data(format!("sheet.accepted event: {e}")))?;
    event_text(tx, &at, "sheet.accepted", &id.to_string(), &detail)?;
    Ok(Inserted::New(SheetRow {
        id,
        practitioner_id: new.practitioner_id.clone(),
        number: new.number,
        destination: new.destination.clone(),
        state: SheetState::Accepted,
        lot_id: None,
        der: new.der.clone(),
        json: new.json.clone(),
        reason: None,
        created_at: new.created_at.clone(),
        updated_at: at,
    }))
}

/// The state and sheet count of a lot, or `NotFound`.
fn lot_state(tx: &Connection, lot_id: &str) -> Result<(LotState, u64), QueueError> {
    let found: Option<(String, i64)> = tx
        .query_row(
            "SELECT state, sheet_count FROM lots WHERE id = ?1",
            [lot_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (state, count) = found.ok_or_else(|| QueueError::NotFound(format!("lot {lot_id}")))?;
    let state = state
        .parse()
        .map_err(|e| QueueError::Data(format!("lot {lot_id}: {e}")))?;
    let count = u64::try_from(count)
        .map_err(|_| QueueError::Data(format!("lot {lot_id}: sheet count {count}")))?;
    Ok((state, count))
}

/// Moves every sheet of a lot from one state to another; the count must be the lot's.
fn move_sheets(
    tx: &Connection,
    lot_id: &str,
    from: SheetState,
    to: SheetState,
    expected: u64,
    at: &str,
) -> Result<u64, QueueError> {
    let n =
        tx.prepare_cached(MOVE_SHEETS)?
            .execute(params![lot_id, from.as_str(), to.as_str(), at])? as u64;
    if n != expected {
        return Err(QueueError::Data(format!(
            "lot {lot_id}: {n} sheets in state {from}, the lot holds {expected}"
        )));
    }
    Ok(n)
}

/// What every connection to the queue runs with: `synchronous=FULL`, foreign keys, and 32 MiB
/// of page cache (a day's sheets and their indexes stay in memory, so a commit writes its
/// pages without reading any back).
fn connection_settings(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "cache_size", -32_768)
}

/// Maps an error met while reading an existing file at open.
fn read_error(path: &Path, e: rusqlite::Error) -> QueueError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => QueueError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        _ => QueueError::Open {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
    }
}

/// [`Queue::close_lots`] within `tx`.
fn close_lots_in(
    tx: &Connection,
    practitioner_id: Option<&str>,
    max_sheets: usize,
    now: &str,
    full_only: bool,
) -> Result<Vec<LotRow>, QueueError> {
    let max_sheets = max_sheets.max(1);
    let at = stamp();
    let groups: Vec<(String, String)> = {
        let mut stmt = tx.prepare_cached(OPEN_GROUPS)?;
        let rows = stmt.query_map(params![practitioner_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut lots = Vec::new();
    for (pid, dest) in groups {
        let sheets: Vec<(i64, i64)> = {
            let mut stmt = tx.prepare_cached(OPEN_SHEETS_OF_GROUP)?;
            let rows = stmt.query_map(params![pid, dest], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for chunk in sheets.chunks(max_sheets) {
            if full_only && chunk.len() < max_sheets {
                break;
            }
            // The chunk is every open sheet of the group from its first id to its last (this
            // transaction read them): one statement moves them all. (`chunks` yields no
            // empty slice.)
            let (Some((first, _)), Some((last, _))) = (chunk.first(), chunk.last()) else {
                continue;
            };
            let number = take_counter(tx, &pid, Counter::Lot)?;
            let lot_id = format!("{pid}-{number:08}");
            tx.execute(
                "INSERT INTO lots (id, practitioner_id, number, destination, state, sheet_count, closed_at, updated_at, seq)
                 VALUES (?1, ?2, ?3, ?4, 'closed', ?5, ?6, ?7, (SELECT COALESCE(MAX(seq), 0) + 1 FROM lots))",
                params![lot_id, pid, to_i64("lot number", number)?, dest, chunk.len() as i64, now, at],
            )?;
            let moved = tx
                .prepare_cached(MOVE_INTO_LOT)?
                .execute(params![lot_id, at, pid, dest, *first, *last])?;
            if moved != chunk.len() {
                return Err(QueueError::Data(format!(
                    "lot {lot_id}: {moved} sheets moved in, {} expected",
                    chunk.len()
                )));
            }
            let numbers: Vec<i64> = chunk.iter().map(|(_, n)| *n).collect();
            event(
                tx,
                &at,
                "lot.closed",
                &lot_id,
                json!({
                    "practitioner_id": pid,
                    "number": number,
                    "destination": dest,
                    "sheet_count": chunk.len(),
                    "sheet_numbers": numbers,
                }),
            )?;
            lots.push(tx.query_row(
                &format!("SELECT {LOT_COLS} FROM lots WHERE id = ?1"),
                [&lot_id],
                lot_row,
            )?);
        }
    }
    Ok(lots)
}

/// [`Queue::mark_lot_signed_with_dres`] within `tx`.
fn lot_signed_in(
    tx: &Connection,
    lot_id: &str,
    signed_der: &[u8],
    cms: Option<&[u8]>,
    dre_lots: &[(String, Vec<u8>, u64)],
) -> Result<(), QueueError> {
    if signed_der.is_empty() {
        return Err(QueueError::Data(format!("lot {lot_id}: empty signed lot")));
    }
    let (state, count) = lot_state(tx, lot_id)?;
    if state != LotState::Closed {
        return Err(QueueError::InvalidTransition {
            subject: format!("lot {lot_id}"),
            from: state.as_str().into(),
            to: LotState::Signed.as_str().into(),
        });
    }
    let at = stamp();
    let checksum = integrity::lot_checksum(lot_id, Some(signed_der), cms);
    tx.execute(
        "UPDATE lots SET state = 'signed', signed_der = ?2, updated_at = ?3, cms = ?4, checksum = ?5 WHERE id = ?1",
        params![lot_id, signed_der, at, cms, checksum.as_slice()],
    )?;
    move_sheets(
        tx,
        lot_id,
        SheetState::InLot,
        SheetState::Signed,
        count,
        &at,
    )?;
    for (amc, der, dres) in dre_lots {
        let checksum = integrity::dre_lot_checksum(lot_id, amc, der);
        tx.execute(
            "INSERT INTO dre_lots (lot_id, amc, der, dres, state, updated_at, checksum) VALUES (?1, ?2, ?3, ?4, 'signed', ?5, ?6)",
            params![lot_id, amc, der, i64::try_from(*dres).unwrap_or(i64::MAX), at, checksum.as_slice()],
        )?;
    }
    event(
        tx,
        &at,
        "lot.signed",
        lot_id,
        json!({ "sheet_count": count, "signed_bytes": signed_der.len(), "dre_lots": dre_lots.len() }),
    )?;
    Ok(())
}

/// [`Queue::mark_lot_sent`] within `tx`.
fn lot_sent_in(tx: &Connection, lot_id: &str) -> Result<bool, QueueError> {
    let (state, count) = lot_state(tx, lot_id)?;
    match state {
        LotState::Signed => {}
        LotState::Closed => {
            return Err(QueueError::InvalidTransition {
                subject: format!("lot {lot_id}"),
                from: state.as_str().into(),
                to: LotState::Sent.as_str().into(),
            });
        }
        LotState::Sent | LotState::Acknowledged | LotState::Rejected => return Ok(false),
    }
    let at = stamp();
    tx.execute(
        "UPDATE lots SET state = 'sent', updated_at = ?2, sent_at = ?2 WHERE id = ?1",
        params![lot_id, at],
    )?;
    move_sheets(tx, lot_id, SheetState::Signed, SheetState::Sent, count, &at)?;
    event(tx, &at, "lot.sent", lot_id, json!({ "sheet_count": count }))?;
    Ok(true)
}

/// `f` on every item within `tx`: their outcomes, or `None` at the first refusal (the caller
/// then rolls the transaction back and goes item by item, [`each_alone`]).
fn all_of<I, T>(
    tx: &Connection,
    items: &[I],
    f: impl Fn(&Connection, &I) -> Result<T, QueueError>,
) -> Option<Vec<Result<T, QueueError>>> {
    items.iter().map(|item| f(tx, item).ok().map(Ok)).collect()
}

/// `f` on each item within a savepoint of its own: each succeeds or is rolled back alone,
/// keeping the others.
fn each_alone<I, T>(
    tx: &mut Transaction<'_>,
    items: &[I],
    f: impl Fn(&Connection, &I) -> Result<T, QueueError>,
) -> Result<Vec<Result<T, QueueError>>, QueueError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let sp = tx.savepoint()?;
        let outcome = f(&sp, item);
        if outcome.is_ok() {
            sp.commit()?;
        } // else the savepoint, dropped, rolls this item back
        out.push(outcome);
    }
    Ok(out)
}

/// One [`GroupWrite`] within `tx`.
fn write_in(tx: &Connection, write: &GroupWrite) -> Result<GroupWritten, QueueError> {
    match write {
        GroupWrite::CloseLots {
            practitioner_id,
            max_sheets,
            now,
            full_only,
        } => close_lots_in(tx, practitioner_id.as_deref(), *max_sheets, now, *full_only)
            .map(GroupWritten::Closed),
        GroupWrite::LotSigned {
            lot_id,
            signed_der,
            cms,
            dre_lots,
        } => lot_signed_in(tx, lot_id, signed_der, cms.as_deref(), dre_lots)
            .map(|()| GroupWritten::Signed),
        GroupWrite::LotSent { lot_id } => lot_sent_in(tx, lot_id).map(GroupWritten::Sent),
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
            detail: e.to_string(),
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
                detail: format!("quick_check: {detail}"),
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
                ),
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
                detail: format!("cannot use WAL here (journal mode stays {mode})"),
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
                ),
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

    /// How many WAL pages make a commit on this connection checkpoint by itself (SQLite's
    /// `wal_autocheckpoint`; 0: never).
    pub fn set_auto_checkpoint(&self, pages: u32) -> Result<(), QueueError> {
        self.conn.pragma_update(None, "wal_autocheckpoint", pages)?;
        Ok(())
    }

    fn write(&mut self) -> Result<Transaction<'_>, QueueError> {
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

    /// Allocates the next sheet number for a practitioner (own transaction,
    /// starting at 1; never reused even if the sheet is never inserted). The
    /// allocation is an event (`sheet.number`), so a gap in the numbering
    /// can be explained.
    pub fn allocate_sheet_number(&mut self, practitioner_id: &str) -> Result<u64, QueueError> {
        let tx = self.write()?;
        let at = stamp();
        let n = take_counter(&tx, practitioner_id, Counter::Sheet)?;
        event(
            &tx,
            &at,
            "sheet.number",
            practitioner_id,
            json!({ "number": n }),
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// The sheet a retry of the request hashed `request_hash` with idempotency key `key` is
    /// answered: the one `practitioner_id` made with that key, refused
    /// ([`QueueError::IdempotencyKeyReused`]) when it was made for another request (hashes
    /// known on both sides that differ). Without a practitioner (no CPS in the reader to tell
    /// whose key it is), the one sheet of any practitioner made with that key for the same
    /// request; none when there are several, or only other requests'. A sheet stored without a
    /// hash (before schema 14) matches any request, as before.
    pub fn find_by_idempotency_key(
        &self,
        practitioner_id: Option<&str>,
        key: &str,
        request_hash: Option<&[u8; 32]>,
    ) -> Result<Option<SheetRow>, QueueError> {
        let Some(pid) = practitioner_id else {
            let mut stmt = self.conn.prepare_cached(SHEETS_BY_KEY)?;
            let rows = stmt.query_map([key], |r| {
                checked_row::<_, i64>("sheet", r, sheet_row_and_hash)
            })?;
            let mut same = Vec::new();
            for row in rows {
                let (row, stored) = row?.map_err(QueueError::Damaged)?;
                if !other_request(stored.as_deref(), request_hash) {
                    same.push(row);
                }
            }
            return Ok(if same.len() == 1 { same.pop() } else { None });
        };
        sheet_by_key(&self.conn, key, pid, request_hash)
    }

    /// Inserts an accepted sheet. If `idempotency_key` is `Some` and the practitioner already
    /// used it, returns the existing row and inserts nothing ([`Inserted::Existing`]), or,
    /// when the existing row was made for another request (`request_hash`), refuses with
    /// [`QueueError::IdempotencyKeyReused`]; else [`Inserted::New`]. Committed (fsync'd by
    /// `synchronous=FULL`) before returning. A number already used by the
    /// practitioner gives [`QueueError::Conflict`]; a number never allocated
    /// moves the counter past it, so it will not be allocated later.
    pub fn insert_sheet(&mut self, new: &NewSheet) -> Result<Inserted, QueueError> {
        let tx = self.write()?;
        let inserted = insert_in(&tx, new)?;
        tx.commit()?;
        Ok(inserted)
    }

    /// Inserts several sheets in one transaction — one fsync for all (group commit). Each
    /// sheet succeeds or fails alone: the outer `Err` is a failure of the transaction itself,
    /// after which none was stored.
    pub fn insert_sheets(
        &mut self,
        batch: &[NewSheet],
    ) -> Result<Vec<Result<Inserted, QueueError>>, QueueError> {
        Ok(self.commit_group(&[], batch)?.1)
    }

    /// One group commit: sheet-number reservations (practitioner, count), then sheet inserts,
    /// all in one transaction. Each reservation and each sheet succeeds or fails alone. The
    /// batch is first tried whole; if a sheet is refused (a number conflict), it is done again
    /// with a savepoint per item.
    pub fn commit_group(
        &mut self,
        reservations: &[(String, u64)],
        batch: &[NewSheet],
    ) -> Result<GroupOutcome, QueueError> {
        Ok(self.commit_group_writes(reservations, batch, &[])?.0)
    }

    /// [`Queue::commit_group`], with lot changes of state after the inserts in the same
    /// transaction (one fsync for all), each succeeding or failing alone as well.
    pub fn commit_group_writes(
        &mut self,
        reservations: &[(String, u64)],
        batch: &[NewSheet],
        writes: &[GroupWrite],
    ) -> Result<GroupWritesOutcome, QueueError> {
        let reserve = |tx: &Connection, (pid, count): &(String, u64)| reserve_in(tx, pid, *count);
        {
            let tx = self.write()?;
            let done = all_of(&tx, reservations, reserve).and_then(|numbers| {
                let out = all_of(&tx, batch, insert_in)?;
                Some(((numbers, out), all_of(&tx, writes, write_in)?))
            });
            if let Some(done) = done {
                tx.commit()?;
                return Ok(done);
            }
        }
        let mut tx = self.write()?;
        let numbers = each_alone(&mut tx, reservations, reserve)?;
        let out = each_alone(&mut tx, batch, insert_in)?;
        let written = each_alone(&mut tx, writes, write_in)?;
        tx.commit()?;
        Ok(((numbers, out), written))
    }

    /// Reserves `count` sheet numbers for a practitioner in one transaction and returns the
    /// first: the caller hands them out in order. Numbers reserved and never used (a restart)
    /// are skipped, never reused; the reservation is an event (`sheet.numbers`) so a gap in
    /// the numbering can be explained.
    pub fn reserve_sheet_numbers(
        &mut self,
        practitioner_id: &str,
        count: u64,
    ) -> Result<u64, QueueError> {
        if count == 0 {
            return Err(QueueError::Data("reserve at least one sheet number".into()));
        }
        let tx = self.write()?;
        let first = reserve_in(&tx, practitioner_id, count)?;
        tx.commit()?;
        Ok(first)
    }

    /// `Accepted` → `Cancelled`, with the practice's reason: the sheet will never be in a lot;
    /// the participation it withheld no longer counts. A sheet already in a lot (or further) is
    /// refused with [`QueueError::InvalidTransition`].
    pub fn cancel_sheet(&mut self, id: i64, reason: &str) -> Result<SheetRow, QueueError> {
        self.sheet_transition(
            id,
            SheetState::Accepted,
            SheetState::Cancelled,
            |tx, at, _| {
                tx.execute(
                "UPDATE sheets SET state = 'cancelled', reason = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, reason, at],
            )?;
                tx.execute("DELETE FROM participation WHERE sheet_id = ?1", [id])?;
                Ok(("sheet.cancelled", json!({ "reason": reason })))
            },
        )
    }

    /// `Rejected` → `Accepted` once the practice has dealt with the rejection: the sheet, as
    /// signed by the patient's card, goes into a new lot and is sent again (the insurer tells
    /// lots apart by their id). Its rejection stays in the `sheet.resubmitted` event. Any other
    /// state is refused with [`QueueError::InvalidTransition`].
    pub fn resubmit_sheet(&mut self, id: i64) -> Result<SheetRow, QueueError> {
        self.sheet_transition(id, SheetState::Rejected, SheetState::Accepted, |tx, at, (reason, lot_id)| {
            tx.execute(
                "UPDATE sheets SET state = 'accepted', lot_id = NULL, reason = NULL, updated_at = ?2 WHERE id = ?1",
                params![id, at],
            )?;
            Ok(("sheet.resubmitted", json!({ "rejected_in": lot_id, "reason": reason })))
        })
    }

    /// A state change the practice asks of one sheet: refused unless the sheet is in `from`;
    /// `apply` (given the transaction, its time, and the sheet's reason and lot) updates it and
    /// names the event to record. One transaction; returns the row after the change.
    fn sheet_transition(
        &mut self,
        id: i64,
        from: SheetState,
        to: SheetState,
        apply: impl FnOnce(
            &Connection,
            &str,
            (Option<String>, Option<String>),
        ) -> Result<(&'static str, serde_json::Value), QueueError>,
    ) -> Result<SheetRow, QueueError> {
        let tx = self.write()?;
        let found: Option<(String, Option<String>, Option<String>)> = tx
            .query_row(
                "SELECT state, reason, lot_id FROM sheets WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (state, reason, lot_id) =
            found.ok_or_else(|| QueueError::NotFound(format!("sheet {id}")))?;
        if state != from.as_str() {
            return Err(QueueError::InvalidTransition {
                subject: format!("sheet {id}"),
                from: state,
                to: to.as_str().into(),
            });
        }
        let at = stamp();
        let (kind, detail) = apply(&tx, &at, (reason, lot_id))?;
        event(&tx, &at, kind, &id.to_string(), detail)?;
        let row = tx
            .query_row(
                &format!("SELECT {SHEET_COLS} FROM {SHEETS_WITH_BODIES} WHERE id = ?1"),
                [id],
                sheet_row,
            )
            .map_err(|e| row_error("sheet", id, e))?;
        tx.commit()?;
        Ok(row)
    }

    /// Acknowledged lots last changed before `before` (an `updated_at` timestamp,
    /// `YYYY-MM-DDTHH:MM:SSZ`): what retention may archive and purge, oldest first.
    pub fn lots_to_purge(&self, before: &str) -> Result<Vec<LotRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {LOT_COLS} FROM lots WHERE state = 'acknowledged' AND updated_at < ?1 ORDER BY seq"
        ))?;
        let rows = stmt.query_map([before], |r| checked_row::<_, String>("lot", r, lot_row))?;
        rows.map(|r| r?.map_err(QueueError::Damaged)).collect()
    }

    /// Purges an acknowledged lot, once archived: its sheets, its ARL and the lot row go, the
    /// participation its sheets withheld is kept (the caps of the year still count it), and a
    /// `lot.purged` event records it. One transaction; returns the number of sheets purged.
    pub fn purge_lot(&mut self, lot_id: &str) -> Result<u64, QueueError> {
        let tx = self.write()?;
        let (state, _) = lot_state(&tx, lot_id)?;
        if state != LotState::Acknowledged {
            return Err(QueueError::InvalidTransition {
                subject: format!("lot {lot_id}"),
                from: state.as_str().into(),
                to: "purged".into(),
            });
        }
        let unsent: i64 = tx.query_row(
            "SELECT COUNT(*) FROM dre_lots WHERE lot_id = ?1 AND state <> 'sent'",
            [lot_id],
            |r| r.get(0),
        )?;
        if unsent > 0 {
            return Err(QueueError::InvalidTransition {
                subject: format!("lot {lot_id} ({unsent} DRE lots not sent)"),
                from: state.as_str().into(),
                to: "purged".into(),
            });
        }
        tx.execute("DELETE FROM dre_lots WHERE lot_id = ?1", [lot_id])?;
        let at = stamp();
        tx.execute(
            "INSERT INTO participation_kept (beneficiary, care_date, cents, professional, acts)
             SELECT beneficiary, care_date, cents, professional, acts FROM participation
             WHERE sheet_id IN (SELECT id FROM sheets WHERE lot_id = ?1)",
            [lot_id],
        )?;
        tx.execute(
            "DELETE FROM participation WHERE sheet_id IN (SELECT id FROM sheets WHERE lot_id = ?1)",
            [lot_id],
        )?;
        tx.execute(
            "DELETE FROM sheet_bodies WHERE sheet_id IN (SELECT id FROM sheets WHERE lot_id = ?1)",
            [lot_id],
        )?;
        let sheets = tx.execute("DELETE FROM sheets WHERE lot_id = ?1", [lot_id])?;
        tx.execute("DELETE FROM acks WHERE lot_id = ?1", [lot_id])?;
        tx.execute("DELETE FROM lots WHERE id = ?1", [lot_id])?;
        event(&tx, &at, "lot.purged", lot_id, json!({ "sheets": sheets }))?;
        tx.commit()?;
        Ok(sheets as u64)
    }

    /// Sheets not sent yet (accepted, in a lot, or signed) whose sending deadline is on or
    /// before `cutoff` (`YYYYMMDD`), earliest deadline first.
    pub fn deadline_alarms(&self, cutoff: &str) -> Result<Vec<DeadlineAlarm>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, practitioner_id, number, state, lot_id, deadline FROM sheets
             WHERE deadline IS NOT NULL AND deadline <= ?1 AND state IN ('accepted', 'in_lot', 'signed')
             ORDER BY deadline, id",
        )?;
        let rows = stmt.query_map([cutoff], |r| {
            Ok(DeadlineAlarm {
                id: r.get(0)?,
                practitioner_id: r.get(1)?,
                number: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                state: r.get(3)?,
                lot_id: r.get(4)?,
                deadline: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The participation forfaitaire already withheld for `beneficiary` on care dates from
    /// `from` to `until` (`YYYYMMDD`, inclusive), summed per date and professional, in date
    /// order.
    pub fn participation_history(
        &self,
        beneficiary: &str,
        from: &str,
        until: &str,
    ) -> Result<Vec<PfRecord>, QueueError> {
        // Both range reads in one read transaction: one snapshot, and one start of a
        // transaction (WAL read lock, and the page cache dropped when the file changed).
        // Within a transaction already, that one is the snapshot.
        if !self.conn.is_autocommit() {
            return participation_in(&self.conn, beneficiary, from, until);
        }
        let tx = self.conn.unchecked_transaction()?;
        let history = participation_in(&tx, beneficiary, from, until)?;
        tx.commit()?;
        Ok(history)
    }

    /// The DRE stored with sheet `id`, if it has one ([`QueueError::Damaged`] when the
    /// sheet's body is damaged).
    pub fn sheet_dre(&self, id: i64) -> Result<Option<Vec<u8>>, QueueError> {
        Ok(self
            .conn
            .query_row(
                "SELECT dre, der, checksum FROM sheet_bodies WHERE sheet_id = ?1",
                [id],
                |r| {
                    let dre: Option<Vec<u8>> = r.get(0)?;
                    let der: Vec<u8> = r.get(1)?;
                    let stored: Option<Vec<u8>> = r.get(2)?;
                    integrity::check(
                        stored.as_deref(),
                        &integrity::sheet_checksum(id, &der, dre.as_deref()),
                    )
                    .map_err(|m| integrity::mismatch_error(2, m))?;
                    Ok(dre)
                },
            )
            .optional()
            .map_err(|e| row_error("sheet", id, e))?
            .flatten())
    }

    /// One sheet by store id; [`QueueError::Damaged`] when its stored row is damaged.
    pub fn get_sheet(&self, id: i64) -> Result<Option<SheetRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {SHEET_COLS} FROM {SHEETS_WITH_BODIES} WHERE id = ?1"
        ))?;
        stmt.query_row([id], sheet_row)
            .optional()
            .map_err(|e| row_error("sheet", id, e))
    }

    /// [`Queue::list_sheets`], where a damaged row is reported by its id (`Err`) in its
    /// place instead of failing the whole page.
    pub fn list_sheets_checked(
        &self,
        state: Option<SheetState>,
        limit: usize,
        after_id: i64,
    ) -> Result<Vec<Result<SheetRow, DamagedRow>>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {SHEET_COLS} FROM {SHEETS_WITH_BODIES} WHERE id > ?1 AND (?2 IS NULL OR state = ?2) ORDER BY id LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![after_id, state.map(SheetState::as_str), limit_i64(limit)],
            |r| checked_row::<_, i64>("sheet", r, sheet_row),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sheets with an id above `after_id`, in id order, at most `limit`,
    /// optionally only those in `state` (for paging: pass the last id seen).
    /// [`QueueError::Damaged`] names the first damaged row (see
    /// [`Queue::list_sheets_checked`]).
    pub fn list_sheets(
        &self,
        state: Option<SheetState>,
        limit: usize,
        after_id: i64,
    ) -> Result<Vec<SheetRow>, QueueError> {
        self.list_sheets_checked(state, limit, after_id)?
            .into_iter()
            .map(|r| r.map_err(QueueError::Damaged))
            .collect()
    }

    /// Groups accepted sheets not yet in a lot by (practitioner, destination),
    /// optionally for one practitioner, into new lots of at most
    /// `max_sheets` sheets (0 is taken as 1), in insertion order. Lot numbers
    /// are allocated per practitioner (1, 2, …); lot id =
    /// `{practitioner_id}-{number:08}`; the lot is `Closed` with
    /// `closed_at = now`; its sheets become `InLot`. Returns the new lots.
    /// One transaction.
    pub fn close_lots(
        &mut self,
        practitioner_id: Option<&str>,
        max_sheets: usize,
        now: &str,
    ) -> Result<Vec<LotRow>, QueueError> {
        self.close_lots_of(practitioner_id, max_sheets, now, false)
    }

    /// [`Queue::close_lots`], closing only full lots (`max_sheets` sheets of one practitioner
    /// for one destination): what a lot closed by its size is; the rest waits for its age.
    pub fn close_full_lots(
        &mut self,
        max_sheets: usize,
        now: &str,
    ) -> Result<Vec<LotRow>, QueueError> {
        self.close_lots_of(None, max_sheets, now, true)
    }

    fn close_lots_of(
        &mut self,
        practitioner_id: Option<&str>,
        max_sheets: usize,
        now: &str,
        full_only: bool,
    ) -> Result<Vec<LotRow>, QueueError> {
        let tx = self.write()?;
        let lots = close_lots_in(&tx, practitioner_id, max_sheets, now, full_only)?;
        tx.commit()?;
        Ok(lots)
    }

    fn lots_in(
        &self,
        state: LotState,
        practitioner_id: Option<&str>,
    ) -> Result<Vec<LotRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {LOT_COLS} FROM lots WHERE state = ?1 AND (?2 IS NULL OR practitioner_id = ?2) ORDER BY seq"
        ))?;
        let rows = stmt.query_map(params![state.as_str(), practitioner_id], |r| {
            checked_row::<_, String>("lot", r, lot_row)
        })?;
        rows.map(|r| r?.map_err(QueueError::Damaged)).collect()
    }

    /// Lots in state `Signed` (waiting to be sent), oldest first, with the damaged ones
    /// reported by id in their place (`Err`): what the transport publishes.
    pub fn lots_to_send_checked(&self) -> Result<Vec<Result<LotRow, DamagedRow>>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {LOT_COLS} FROM lots WHERE state = 'signed' ORDER BY seq"
        ))?;
        let rows = stmt.query_map([], |r| checked_row::<_, String>("lot", r, lot_row))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Lots in state `Closed` (waiting for a signature), optionally for one
    /// practitioner, oldest first.
    pub fn lots_to_sign(&self, practitioner_id: Option<&str>) -> Result<Vec<LotRow>, QueueError> {
        self.lots_in(LotState::Closed, practitioner_id)
    }

    /// The sheets waiting for a lot: how many (counted up to `cap`) and when the oldest was
    /// created. Cheap: it reads the state index, not the sheets.
    pub fn accepted_summary(&self, cap: usize) -> Result<(u64, Option<String>), QueueError> {
        let count: i64 = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM (SELECT 1 FROM sheets WHERE state = 'accepted' LIMIT ?1)",
            )?
            .query_row([limit_i64(cap)], |r| r.get(0))?;
        let oldest: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT created_at FROM sheets WHERE state = 'accepted' ORDER BY id LIMIT 1",
            )?
            .query_row([], |r| r.get(0))
            .optional()?;
        Ok((u64::try_from(count).unwrap_or(0), oldest))
    }

    /// Lots in state `Signed` (waiting to be sent), oldest first.
    pub fn lots_to_send(&self) -> Result<Vec<LotRow>, QueueError> {
        self.lots_in(LotState::Signed, None)
    }

    /// The sheets of a lot in insertion order (empty for an unknown lot).
    pub fn lot_sheets(&self, lot_id: &str) -> Result<Vec<SheetRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {SHEET_COLS} FROM {SHEETS_WITH_BODIES} WHERE lot_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([lot_id], |r| checked_row::<_, i64>("sheet", r, sheet_row))?;
        rows.map(|r| r?.map_err(QueueError::Damaged)).collect()
    }

    /// What a lot is built from: each sheet's DER and its DRE (if it has one), in insertion
    /// order (empty for an unknown lot).
    #[allow(clippy::type_complexity)]
    pub fn lot_bodies(&self, lot_id: &str) -> Result<Vec<(Vec<u8>, Option<Vec<u8>>)>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id, der, dre, checksum FROM {SHEETS_WITH_BODIES} WHERE lot_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([lot_id], |r| {
            checked_row::<_, i64>("sheet", r, |r| {
                let id: i64 = r.get(0)?;
                let der: Vec<u8> = r.get(1)?;
                let dre: Option<Vec<u8>> = r.get(2)?;
                let stored: Option<Vec<u8>> = r.get(3)?;
                integrity::check(
                    stored.as_deref(),
                    &integrity::sheet_checksum(id, &der, dre.as_deref()),
                )
                .map_err(|m| integrity::mismatch_error(3, m))?;
                Ok((der, dre))
            })
        })?;
        rows.map(|r| r?.map_err(QueueError::Damaged)).collect()
    }

    /// DRE lots waiting to be sent to their AMC, oldest lot first: (lot id, AMC number, DER).
    /// [`QueueError::Damaged`] names the first damaged one (see
    /// [`Queue::dre_lots_to_send_checked`]).
    #[allow(clippy::type_complexity)]
    pub fn dre_lots_to_send(&self) -> Result<Vec<(String, String, Vec<u8>)>, QueueError> {
        self.dre_lots_to_send_checked()?
            .into_iter()
            .map(|r| r.map_err(QueueError::Damaged))
            .collect()
    }

    /// [`Queue::dre_lots_to_send`], with the damaged DRE lots reported (id `{lot}/{AMC}`) in
    /// their place.
    #[allow(clippy::type_complexity)]
    pub fn dre_lots_to_send_checked(
        &self,
    ) -> Result<Vec<Result<(String, String, Vec<u8>), DamagedRow>>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.lot_id || '/' || d.amc, d.lot_id, d.amc, d.der, d.checksum FROM dre_lots d \
             JOIN lots l ON l.id = d.lot_id WHERE d.state = 'signed' ORDER BY l.seq, d.amc",
        )?;
        let rows = stmt.query_map([], |r| {
            checked_row::<_, String>("dre_lot", r, |r| {
                let (lot_id, amc, der): (String, String, Vec<u8>) =
                    (r.get(1)?, r.get(2)?, r.get(3)?);
                let stored: Option<Vec<u8>> = r.get(4)?;
                integrity::check(
                    stored.as_deref(),
                    &integrity::dre_lot_checksum(&lot_id, &amc, &der),
                )
                .map_err(|m| integrity::mismatch_error(4, m))?;
                Ok((lot_id, amc, der))
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A DRE lot confirmed by the broker (or durable in the spool): `signed` → `sent`, with its
    /// event. Marking it again changes nothing.
    pub fn mark_dre_lot_sent(&mut self, lot_id: &str, amc: &str) -> Result<(), QueueError> {
        let tx = self.write()?;
        let at = stamp();
        let changed = tx.execute(
            "UPDATE dre_lots SET state = 'sent', updated_at = ?3 WHERE lot_id = ?1 AND amc = ?2 AND state = 'signed'",
            params![lot_id, amc, at],
        )?;
        if changed == 1 {
            event(&tx, &at, "dre_lot.sent", lot_id, json!({ "amc": amc }))?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A lot's DRE lots: (AMC number, DREs, state).
    pub fn lot_dre_lots(&self, lot_id: &str) -> Result<Vec<(String, u64, String)>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT amc, dres, state FROM dre_lots WHERE lot_id = ?1 ORDER BY amc",
        )?;
        let rows = stmt.query_map([lot_id], |r| Ok((r.get(0)?, get_u64(r, 1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The ids of a lot's sheets, in order.
    pub fn lot_sheet_ids(&self, lot_id: &str) -> Result<Vec<i64>, QueueError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM sheets WHERE lot_id = ?1 ORDER BY id")?;
        let rows = stmt.query_map([lot_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One lot; [`QueueError::Damaged`] when its stored row is damaged.
    pub fn get_lot(&self, lot_id: &str) -> Result<Option<LotRow>, QueueError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {LOT_COLS} FROM lots WHERE id = ?1"))?;
        stmt.query_row([lot_id], lot_row)
            .optional()
            .map_err(|e| row_error("lot", lot_id, e))
    }

    /// The most recent lots, newest first, at most `limit`. [`QueueError::Damaged`] names
    /// the first damaged one (see [`Queue::list_lots_checked`]).
    pub fn list_lots(&self, limit: usize) -> Result<Vec<LotRow>, QueueError> {
        self.list_lots_checked(limit)?
            .into_iter()
            .map(|r| r.map_err(QueueError::Damaged))
            .collect()
    }

    /// [`Queue::list_lots`], with the damaged lots reported by id in their place.
    pub fn list_lots_checked(
        &self,
        limit: usize,
    ) -> Result<Vec<Result<LotRow, DamagedRow>>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {LOT_COLS} FROM lots ORDER BY seq DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit_i64(limit)], |r| {
            checked_row::<_, String>("lot", r, lot_row)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// `Closed` → `Signed`: stores the signed lot DER; its sheets `InLot` →
    /// `Signed`. [`QueueError::InvalidTransition`] if the lot is not
    /// `Closed` (so a lot is never signed twice), [`QueueError::NotFound`] if
    /// there is no such lot.
    pub fn mark_lot_signed(&mut self, lot_id: &str, signed_der: &[u8]) -> Result<(), QueueError> {
        self.mark_lot_signed_with_cms(lot_id, signed_der, None)
    }

    /// [`Queue::mark_lot_signed`], storing also the lot's CMS SignedData in the same transaction.
    pub fn mark_lot_signed_with_cms(
        &mut self,
        lot_id: &str,
        signed_der: &[u8],
        cms: Option<&[u8]>,
    ) -> Result<(), QueueError> {
        self.mark_lot_signed_with_dres(lot_id, signed_der, cms, &[])
    }

    /// [`Queue::mark_lot_signed_with_cms`], storing also the lot's DRE lots (AMC number, DER,
    /// number of DREs), to be sent to their AMCs, in the same transaction.
    pub fn mark_lot_signed_with_dres(
        &mut self,
        lot_id: &str,
        signed_der: &[u8],
        cms: Option<&[u8]>,
        dre_lots: &[(String, Vec<u8>, u64)],
    ) -> Result<(), QueueError> {
        let tx = self.write()?;
        lot_signed_in(&tx, lot_id, signed_der, cms, dre_lots)?;
        tx.commit()?;
        Ok(())
    }

    /// The CMS SignedData of a signed lot, when it has one ([`QueueError::Damaged`] when
    /// the lot's stored row is damaged).
    pub fn lot_cms(&self, lot_id: &str) -> Result<Option<Vec<u8>>, QueueError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {LOT_COLS} FROM lots WHERE id = ?1"))?;
        Ok(stmt
            .query_row([lot_id], |r| {
                lot_row(r)?;
                r.get::<_, Option<Vec<u8>>>(9)
            })
            .optional()
            .map_err(|e| row_error("lot", lot_id, e))?
            .flatten())
    }

    /// `Signed` → `Sent` (the broker confirmed / the spool file is durable);
    /// its sheets → `Sent`. Idempotent: `Ok(true)` when it changed,
    /// `Ok(false)` when the lot was already sent or later.
    /// [`QueueError::InvalidTransition`] for a lot not yet signed.
    pub fn mark_lot_sent(&mut self, lot_id: &str) -> Result<bool, QueueError> {
        let tx = self.write()?;
        let changed = lot_sent_in(&tx, lot_id)?;
        tx.commit()?;
        Ok(changed)
    }

    /// Applies an ARL, idempotently, in one transaction: stores it (table
    /// `acks`), moves the lot `Sent` (or still `Signed`, when the ARL came
    /// before `Sent` was recorded) → `Acknowledged` (positive) or `Rejected`
    /// (negative), and each of its sheets → `Acknowledged` or `Rejected`.
    ///
    /// A sheet is rejected, with the reasons that apply to it in `reason`
    /// (`CODE: reason`, joined by `; `), when a rejection names its number,
    /// or when the ARL rejects the whole lot: a rejection without a sheet
    /// number, a rejection naming a number that is not in the lot (the
    /// cautious reading: no sheet is taken as accepted on an ARL that does
    /// not match the lot), or a negative ARL without any rejection. The
    /// other sheets are acknowledged.
    ///
    /// An ARL for a lot already acknowledged or rejected changes nothing and
    /// gives [`ArlOutcome::Duplicate`]; an unknown lot gives
    /// [`QueueError::NotFound`]; a lot not yet signed gives
    /// [`QueueError::InvalidTransition`]. The caller checks that the ARL's
    /// Merkle root is the signed lot's before applying it.
    pub fn record_arl(&mut self, arl: &Arl, der: &[u8]) -> Result<ArlOutcome, QueueError> {
        let lot_id = arl.lot_id.as_str();
        let (lot_to, status) = match arl.status {
            ArlStatus::Positive => (LotState::Acknowledged, "positive"),
            ArlStatus::Negative => (LotState::Rejected, "negative"),
        };
        let tx = self.write()?;
        let (from, count) = lot_state(&tx, lot_id)?;
        match from {
            LotState::Acknowledged | LotState::Rejected => return Ok(ArlOutcome::Duplicate),
            LotState::Closed => {
                return Err(QueueError::InvalidTransition {
                    subject: format!("lot {lot_id}"),
                    from: from.as_str().into(),
                    to: lot_to.as_str().into(),
                });
            }
            LotState::Signed | LotState::Sent => {}
        }
        let sheet_from = if from == LotState::Signed {
            SheetState::Signed
        } else {
            SheetState::Sent
        };
        let sheets: Vec<(i64, u64)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, number FROM sheets WHERE lot_id = ?1 AND state = ?2 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![lot_id, sheet_from.as_str()], |r| {
                Ok((r.get(0)?, get_u64(r, 1)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        if sheets.len() as u64 != count {
            return Err(QueueError::Data(format!(
                "lot {lot_id}: {} sheets in state {sheet_from}, the lot holds {count}",
                sheets.len()
            )));
        }
        let numbers: BTreeSet<u64> = sheets.iter().map(|(_, n)| *n).collect();
        let mut per_sheet: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        let mut whole_lot: Vec<String> = Vec::new();
        for r in &arl.rejections {
            let text = format!("{}: {}", r.code, r.reason);
            match r.sheet_number {
                Some(n) if numbers.contains(&n) => per_sheet.entry(n).or_default().push(text),
                Some(n) => {
                    whole_lot.push(format!("{text} (for sheet {n}, which is not in this lot)"))
                }
                None => whole_lot.push(text),
            }
        }
        if arl.status == ArlStatus::Negative && arl.rejections.is_empty() {
            whole_lot.push("NEGATIVE: negative ARL without a reason".into());
        }

        let at = stamp();
        let rejections =
            serde_json::to_string(&arl.rejections).map_err(|e| QueueError::Data(e.to_string()))?;
        tx.execute(
            "INSERT INTO acks (lot_id, status, der, received_at, rejections, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![lot_id, status, der, arl.received_at, rejections, at],
        )?;
        tx.execute(
            "UPDATE lots SET state = ?2, updated_at = ?3 WHERE id = ?1",
            params![lot_id, lot_to.as_str(), at],
        )?;
        let (mut acknowledged, mut rejected) = (0u64, 0u64);
        {
            let mut upd = tx.prepare_cached(
                "UPDATE sheets SET state = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1",
            )?;
            for (id, number) in &sheets {
                let reasons: Vec<&str> = per_sheet
                    .get(number)
                    .into_iter()
                    .flatten()
                    .chain(&whole_lot)
                    .map(String::as_str)
                    .collect();
                if reasons.is_empty() {
                    upd.execute(params![
                        id,
                        SheetState::Acknowledged.as_str(),
                        None::<String>,
                        at
                    ])?;
                    acknowledged += 1;
                } else {
                    upd.execute(params![
                        id,
                        SheetState::Rejected.as_str(),
                        reasons.join("; "),
                        at
                    ])?;
                    rejected += 1;
                }
            }
        }
        event(
            &tx,
            &at,
            if arl.status == ArlStatus::Positive {
                "arl.positive"
            } else {
                "arl.negative"
            },
            lot_id,
            json!({
                "from": from.as_str(),
                "insurer": arl.insurer,
                "received_at": arl.received_at,
                "acknowledged": acknowledged,
                "rejected": rejected,
            }),
        )?;
        tx.commit()?;
        Ok(ArlOutcome::Applied)
    }

    /// Applies one payment return, in one transaction: each sheet of the lot it names that is
    /// acknowledged becomes `paid` (with its amount) or `refused` (with its code and reason),
    /// with its event. A sheet that already has its payment return is a duplicate and stays
    /// as it is; a number not in the lot, or a sheet the ARL rejected, is ignored (and said).
    /// When some named sheet is still waiting for its ARL, nothing is applied
    /// ([`PaymentsApplied::not_yet`]): the return is to be offered again once the ARL is in.
    pub fn record_payments(&mut self, ret: &PaymentReturn) -> Result<PaymentsApplied, QueueError> {
        let tx = self.write()?;
        let mut out = PaymentsApplied::default();
        let at = stamp();
        {
            let mut find = tx.prepare_cached(
                "SELECT s.id, s.state, p.sheet_id IS NOT NULL FROM sheets s \
                 LEFT JOIN payments p ON p.sheet_id = s.id WHERE s.lot_id = ?1 AND s.number = ?2",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO payments (sheet_id, lot_id, number, outcome, amount_cents, code, reason, insurer, issued_at, recorded_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut upd = tx.prepare_cached(
                "UPDATE sheets SET state = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1",
            )?;
            for p in &ret.payments {
                let Ok(number) = i64::try_from(p.sheet_number) else {
                    out.ignored
                        .push((p.sheet_number, "no such sheet in this lot".into()));
                    continue;
                };
                let found: Option<(i64, String, bool)> = find
                    .query_row(params![ret.lot_id, number], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()?;
                let Some((id, state, paid_before)) = found else {
                    out.ignored
                        .push((p.sheet_number, "no such sheet in this lot".into()));
                    continue;
                };
                if paid_before {
                    out.duplicates += 1;
                    continue;
                }
                let state =
                    SheetState::from_str(&state).map_err(|e| QueueError::Data(e.to_string()))?;
                match state {
                    SheetState::Acknowledged => {}
                    SheetState::InLot | SheetState::Signed | SheetState::Sent => {
                        out.not_yet = true;
                        return Ok(out);
                    }
                    other => {
                        out.ignored
                            .push((p.sheet_number, format!("the sheet is {other}, not payable")));
                        continue;
                    }
                }
                let (to, amount, code, reason, kind) = match &p.outcome {
                    PaymentOutcome::Paid { amount_cents } => {
                        (SheetState::Paid, *amount_cents, None, None, "sheet.paid")
                    }
                    PaymentOutcome::Refused { code, reason } => (
                        SheetState::Refused,
                        0,
                        Some(code.as_str()),
                        Some(reason.as_str()),
                        "sheet.refused",
                    ),
                };
                let Ok(amount_i) = i64::try_from(amount) else {
                    out.ignored
                        .push((p.sheet_number, "amount out of range".into()));
                    continue;
                };
                insert.execute(params![
                    id,
                    ret.lot_id,
                    number,
                    to.as_str(),
                    amount_i,
                    code,
                    reason,
                    ret.insurer,
                    ret.issued_at,
                    at
                ])?;
                let shown = code.map(|c| format!("{c}: {}", reason.unwrap_or_default()));
                upd.execute(params![id, to.as_str(), shown, at])?;
                event(
                    &tx,
                    &at,
                    kind,
                    &id.to_string(),
                    json!({ "lot_id": ret.lot_id, "number": p.sheet_number, "amount_cents": amount, "code": code, "reason": reason, "insurer": ret.insurer }),
                )?;
                out.applied.push(PaymentRow {
                    sheet_id: id,
                    number: p.sheet_number,
                    lot_id: ret.lot_id.clone(),
                    outcome: p.outcome.clone(),
                    insurer: ret.insurer.clone(),
                    issued_at: ret.issued_at.clone(),
                    recorded_at: at.clone(),
                });
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Payment returns recorded, newest first, at most `limit`; only those of `lot_id` when given.
    pub fn payments(
        &self,
        lot_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PaymentRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT sheet_id, number, lot_id, outcome, amount_cents, code, reason, insurer, issued_at, recorded_at \
             FROM payments WHERE ?1 IS NULL OR lot_id = ?1 ORDER BY recorded_at DESC, sheet_id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![lot_id, limit_i64(limit)], |r| {
            let outcome: String = r.get(3)?;
            let outcome = if outcome == "paid" {
                PaymentOutcome::Paid {
                    amount_cents: get_u64(r, 4)?,
                }
            } else {
                PaymentOutcome::Refused {
                    code: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                    reason: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                }
            };
            Ok(PaymentRow {
                sheet_id: r.get(0)?,
                number: get_u64(r, 1)?,
                lot_id: r.get(2)?,
                outcome,
                insurer: r.get(7)?,
                issued_at: r.get(8)?,
                recorded_at: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// ARLs recorded, newest first, at most `limit`; only the one of `lot_id` when given.
    pub fn acks(&self, lot_id: Option<&str>, limit: usize) -> Result<Vec<AckRow>, QueueError> {
        let ids: Vec<String> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT lot_id FROM acks WHERE ?1 IS NULL OR lot_id = ?1 ORDER BY recorded_at DESC, lot_id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![lot_id, limit_i64(limit)], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(a) = self.get_ack(&id)? {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// The ARL recorded for a lot, if any.
    pub fn get_ack(&self, lot_id: &str) -> Result<Option<AckRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT lot_id, status, der, received_at, rejections, recorded_at FROM acks WHERE lot_id = ?1",
        )?;
        let raw: Option<(String, String, Vec<u8>, String, String, String)> = stmt
            .query_row([lot_id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .optional()?;
        let Some((lot_id, status, der, received_at, rejections, recorded_at)) = raw else {
            return Ok(None);
        };
        let status = match status.as_str() {
            "positive" => ArlStatus::Positive,
            "negative" => ArlStatus::Negative,
            other => {
                return Err(QueueError::Data(format!(
                    "ARL of lot {lot_id}: status {other:?}"
                )))
            }
        };
        let rejections = serde_json::from_str(&rejections)
            .map_err(|e| QueueError::Data(format!("ARL of lot {lot_id}: rejections: {e}")))?;
        Ok(Some(AckRow {
            lot_id,
            status,
            der,
            received_at,
            rejections,
            recorded_at,
        }))
    }

    /// Lots sent whose ARL has not come and whose last sending is at or before `cutoff` (a row
    /// time stamp: now less the ARL timeout), sent again fewer than `max_resends` times:
    /// what is to be sent again now, oldest lot first; damaged lots are left out.
    pub fn lots_to_resend(
        &self,
        cutoff: &str,
        max_resends: u32,
    ) -> Result<Vec<LotRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {LOT_COLS} FROM lots WHERE state = 'sent' AND sent_at <= ?1 AND resends < ?2 ORDER BY seq"
        ))?;
        // A damaged lot is not sent again (`store.verify` and the thorough doctor name it); the
        // others still are.
        let rows = stmt.query_map(params![cutoff, max_resends], |r| {
            checked_row::<_, String>("lot", r, lot_row)
        })?;
        let mut due = Vec::new();
        for row in rows {
            if let Ok(lot) = row? {
                due.push(lot);
            }
        }
        Ok(due)
    }

    /// When the next lot sent without its ARL (and with resends left) was last sent: from it
    /// and the ARL timeout comes the time of the next resend.
    pub fn next_resend_from(&self, max_resends: u32) -> Result<Option<String>, QueueError> {
        Ok(self
            .conn
            .prepare_cached("SELECT MIN(sent_at) FROM lots WHERE state = 'sent' AND resends < ?1")?
            .query_row([max_resends], |r| r.get(0))?)
    }

    /// The lots whose ARL is missing: sent, no ARL, and either sent again already or last sent
    /// at or before `cutoff` (now less the ARL timeout); `given_up` once `max_resends` resends
    /// are made. Oldest lot first.
    pub fn arl_alarms(&self, cutoff: &str, max_resends: u32) -> Result<Vec<ArlAlarm>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, practitioner_id, destination, sheet_count, sent_at, resends,
                    resends >= ?2 AND sent_at <= ?1
             FROM lots WHERE state = 'sent' AND (resends > 0 OR sent_at <= ?1) ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![cutoff, max_resends], |r| {
            Ok(ArlAlarm {
                lot_id: r.get(0)?,
                practitioner_id: r.get(1)?,
                destination: r.get(2)?,
                sheet_count: get_u64(r, 3)?,
                sent_at: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                resends: u32::try_from(get_u64(r, 5)?).unwrap_or(u32::MAX),
                given_up: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A lot sent again (the broker confirmed it again, or its spool file is written again):
    /// its resends count one more and its ARL is waited for from now, with a `lot.resent`
    /// event. Returns the attempt (1 for the first resend), or `None` when the lot is no
    /// longer `sent` (its ARL came meanwhile): nothing changed. An unknown lot is
    /// [`QueueError::NotFound`].
    pub fn mark_lot_resent(&mut self, lot_id: &str) -> Result<Option<u32>, QueueError> {
        let tx = self.write()?;
        let (state, _) = lot_state(&tx, lot_id)?;
        if state != LotState::Sent {
            return Ok(None);
        }
        let at = stamp();
        tx.execute(
            "UPDATE lots SET resends = resends + 1, sent_at = ?2 WHERE id = ?1",
            params![lot_id, at],
        )?;
        let attempt: i64 =
            tx.query_row("SELECT resends FROM lots WHERE id = ?1", [lot_id], |r| {
                r.get(0)
            })?;
        let attempt = u32::try_from(attempt)
            .map_err(|_| QueueError::Data(format!("lot {lot_id}: resends {attempt}")))?;
        event(
            &tx,
            &at,
            "lot.resent",
            lot_id,
            json!({ "attempt": attempt }),
        )?;
        tx.commit()?;
        Ok(Some(attempt))
    }

    /// Resends over every lot, and the lots without an ARL: still being sent again, or given
    /// up (`max_resends` resends made and the last one also unanswered at `cutoff`, now less
    /// the ARL timeout).
    pub fn resend_stats(&self, cutoff: &str, max_resends: u32) -> Result<ResendStats, QueueError> {
        let (total, waiting, given_up) = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(SUM(resends), 0),
                        COALESCE(SUM(state = 'sent' AND resends > 0
                                     AND NOT (resends >= ?2 AND sent_at <= ?1)), 0),
                        COALESCE(SUM(state = 'sent' AND resends >= ?2 AND sent_at <= ?1), 0)
                 FROM lots",
            )?
            .query_row(params![cutoff, max_resends], |r| {
                Ok((get_u64(r, 0)?, get_u64(r, 1)?, get_u64(r, 2)?))
            })?;
        Ok(ResendStats {
            total,
            waiting,
            given_up,
        })
    }

    /// Counts of sheets and lots per state (every state present, 0 when none).
    pub fn stats(&self) -> Result<Stats, QueueError> {
        let count = |sql: &str, all: &mut BTreeMap<String, u64>| -> Result<(), QueueError> {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, get_u64(r, 1)?)))?;
            for row in rows {
                let (state, n) = row?;
                all.insert(state, n);
            }
            Ok(())
        };
        let mut sheets: BTreeMap<String, u64> = SheetState::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        let mut lots: BTreeMap<String, u64> = LotState::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        count(
            "SELECT state, COUNT(*) FROM sheets GROUP BY state",
            &mut sheets,
        )?;
        count("SELECT state, COUNT(*) FROM lots GROUP BY state", &mut lots)?;
        Ok(Stats {
            sheets,
            lots,
            dead_letters: self.dead_letter_counts()?,
        })
    }

    /// Counts one return dead-lettered for `reason` (a stable code), with its event
    /// `return.dead_lettered` (subject: the lot it names, or `-`), in one transaction.
    pub fn record_dead_letter(
        &mut self,
        reason: &str,
        lot_id: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<(), QueueError> {
        let tx = self.write()?;
        let at = stamp();
        tx.prepare_cached(
            "INSERT INTO return_dead_letters (reason, count, last_at) VALUES (?1, 1, ?2) \
             ON CONFLICT (reason) DO UPDATE SET count = count + 1, last_at = ?2",
        )?
        .execute(params![reason, at])?;
        event(
            &tx,
            &at,
            "return.dead_lettered",
            lot_id.unwrap_or("-"),
            detail,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Returns dead-lettered so far, per reason (only the reasons met).
    pub fn dead_letter_counts(&self) -> Result<BTreeMap<String, u64>, QueueError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT reason, count FROM return_dead_letters ORDER BY reason")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, get_u64(r, 1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What waits to be sent: how many sheets, the oldest, the nearest deadline; and the time
    /// of the last event (a clock now behind it went back).
    pub fn backlog(&self) -> Result<Backlog, QueueError> {
        let (unsent, oldest_created_at, nearest_deadline) = self
            .conn
            .prepare_cached(BACKLOG)?
            .query_row([], |r| Ok((get_u64(r, 0)?, r.get(1)?, r.get(2)?)))?;
        let last_event_at = self
            .conn
            .prepare_cached("SELECT at FROM events ORDER BY id DESC LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        Ok(Backlog {
            unsent,
            oldest_created_at,
            nearest_deadline,
            last_event_at,
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

#[cfg(test)]
mod integrity_tests;
#[cfg(test)]
mod tests;
