//! Sheets: inserting them (alone or in group commits, with their lot changes), idempotency
//! keys, reading and listing them, cancelling and resubmitting.

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde_json::json;

use crate::events::{event, event_text, stamp};
use crate::lots::{close_lots_in, lot_sent_in, lot_signed_in};
use crate::numbering::reserve_in;
use crate::participation::check_caps;
use crate::rows::{
    checked_row, limit_i64, row_error, sheet_row, to_i64, SHEETS_WITH_BODIES, SHEET_COLS,
};
use crate::{
    integrity, DamagedRow, GroupOutcome, GroupWrite, GroupWritesOutcome, GroupWritten, Inserted,
    NewSheet, PractitionerId, Queue, QueueError, SheetId, SheetRow, SheetState, Stamp,
};

/// A new sheet's row; an idempotency key the practitioner already used inserts nothing.
pub(crate) const INSERT_SHEET: &str = "INSERT INTO sheets (practitioner_id, number, destination, idempotency_key, request_hash, state, created_at, updated_at, deadline)
     VALUES (?1, ?2, ?3, ?4, ?5, 'accepted', ?6, ?7, ?8)
     ON CONFLICT (idempotency_key, practitioner_id) WHERE idempotency_key IS NOT NULL DO NOTHING";

/// The sheet practitioner `?2` made with idempotency key `?1`, and the hash of its request.
pub(crate) const SHEET_BY_KEY: &str = "SELECT id, practitioner_id, number, destination, state, lot_id, der, reason, created_at, updated_at, dre, checksum, request_hash
     FROM sheets JOIN sheet_bodies ON sheet_id = id WHERE idempotency_key = ?1 AND practitioner_id = ?2";

/// The sheets of every practitioner made with idempotency key `?1`, and the hashes of their
/// requests.
pub(crate) const SHEETS_BY_KEY: &str = "SELECT id, practitioner_id, number, destination, state, lot_id, der, reason, created_at, updated_at, dre, checksum, request_hash
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
    practitioner_id: &PractitionerId,
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
                practitioner_id: practitioner_id.clone(),
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

/// Inserts one sheet within `tx` (see [`Queue::insert_sheet`]).
fn insert_in(tx: &Connection, new: &NewSheet) -> Result<Inserted, QueueError> {
    let number = to_i64("sheet number", new.number)?;
    let now = Stamp::now();
    let at = now.text();
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
        new.created_at.text(),
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
    .map_err(|e| QueueError::Decode {
        what: "sheet.accepted event".into(),
        source: e.into(),
    })?;
    event_text(tx, &at, "sheet.accepted", &id.to_string(), &detail)?;
    Ok(Inserted::New(SheetRow {
        id: SheetId(id),
        practitioner_id: new.practitioner_id.clone(),
        number: new.number,
        destination: new.destination.clone(),
        state: SheetState::Accepted,
        lot_id: None,
        der: new.der.clone(),
        reason: None,
        created_at: new.created_at,
        updated_at: now,
    }))
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
        } => close_lots_in(
            tx,
            practitioner_id.as_deref(),
            *max_sheets,
            *now,
            *full_only,
        )
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
    /// The sheet a retry of the request hashed `request_hash` with idempotency key `key` is
    /// answered: the one `practitioner_id` made with that key, refused
    /// ([`QueueError::IdempotencyKeyReused`]) when it was made for another request (hashes
    /// known on both sides that differ). Without a practitioner (no CPS in the reader to tell
    /// whose key it is), the one sheet of any practitioner made with that key for the same
    /// request; none when there are several, or only other requests'. A sheet stored without a
    /// hash (before schema 14) matches any request, as before.
    pub fn find_by_idempotency_key(
        &self,
        practitioner_id: Option<&PractitionerId>,
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
        reservations: &[(PractitionerId, u64)],
        batch: &[NewSheet],
    ) -> Result<GroupOutcome, QueueError> {
        Ok(self.commit_group_writes(reservations, batch, &[])?.0)
    }

    /// [`Queue::commit_group`], with lot changes of state after the inserts in the same
    /// transaction (one fsync for all), each succeeding or failing alone as well.
    pub fn commit_group_writes(
        &mut self,
        reservations: &[(PractitionerId, u64)],
        batch: &[NewSheet],
        writes: &[GroupWrite],
    ) -> Result<GroupWritesOutcome, QueueError> {
        let reserve =
            |tx: &Connection, (pid, count): &(PractitionerId, u64)| reserve_in(tx, pid, *count);
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

    /// `Accepted` → `Cancelled`, with the practice's reason: the sheet will never be in a lot;
    /// the participation it withheld no longer counts. A sheet already in a lot (or further) is
    /// refused with [`QueueError::InvalidTransition`].
    pub fn cancel_sheet(&mut self, id: SheetId, reason: &str) -> Result<SheetRow, QueueError> {
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
    pub fn resubmit_sheet(&mut self, id: SheetId) -> Result<SheetRow, QueueError> {
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
        id: SheetId,
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

    /// The DRE stored with sheet `id`, if it has one ([`QueueError::Damaged`] when the
    /// sheet's body is damaged).
    pub fn sheet_dre(&self, id: SheetId) -> Result<Option<Vec<u8>>, QueueError> {
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
                        &integrity::sheet_checksum(id.0, &der, dre.as_deref()),
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
    pub fn get_sheet(&self, id: SheetId) -> Result<Option<SheetRow>, QueueError> {
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
        after_id: SheetId,
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
        after_id: SheetId,
    ) -> Result<Vec<SheetRow>, QueueError> {
        self.list_sheets_checked(state, limit, after_id)?
            .into_iter()
            .map(|r| r.map_err(QueueError::Damaged))
            .collect()
    }
}
