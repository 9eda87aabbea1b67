//! Lots: closing open sheets into lots, signing, sending and sending again, and reading
//! lots and what they are built from.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

use crate::events::{event, stamp};
use crate::numbering::{take_counter, Counter};
use crate::rows::{
    checked_row, limit_i64, lot_row, row_error, sheet_row, to_i64, LOT_COLS, SHEETS_WITH_BODIES,
    SHEET_COLS,
};
use crate::{
    integrity, CompactTime, DamagedRow, LotId, LotRow, LotState, PractitionerId, Queue, QueueError,
    SheetId, SheetRow, SheetState, Stamp,
};

/// The practitioners and destinations with open sheets (`?1`: one practitioner, or all).
pub(crate) const OPEN_GROUPS: &str = "SELECT DISTINCT practitioner_id, destination FROM sheets
     WHERE state = 'accepted' AND lot_id IS NULL AND (?1 IS NULL OR practitioner_id = ?1)
     ORDER BY practitioner_id, destination";

/// The open sheets of practitioner `?1` for destination `?2`, oldest first. They are found
/// through `sheets_accepted`: the `+` keeps the planner, which has no statistics, off the
/// index by practitioner, which holds every sheet ever made.
pub(crate) const OPEN_SHEETS_OF_GROUP: &str = "SELECT id, number FROM sheets
     WHERE state = 'accepted' AND lot_id IS NULL AND +practitioner_id = ?1 AND destination = ?2
     ORDER BY id";

/// Moves the open sheets of practitioner `?3` for destination `?4` with ids `?5` to `?6`
/// into lot `?1` at `?2`.
pub(crate) const MOVE_INTO_LOT: &str =
    "UPDATE sheets SET state = 'in_lot', lot_id = ?1, updated_at = ?2
     WHERE state = 'accepted' AND lot_id IS NULL AND +practitioner_id = ?3
       AND destination = ?4 AND id BETWEEN ?5 AND ?6";

/// Moves the sheets of lot `?1` in state `?2` to state `?3` at `?4` (found through
/// `sheets_lot`).
pub(crate) const MOVE_SHEETS: &str =
    "UPDATE sheets SET state = ?3, updated_at = ?4 WHERE lot_id = ?1 AND state = ?2";

/// The state and sheet count of a lot, or `NotFound`.
pub(crate) fn lot_state(tx: &Connection, lot_id: &str) -> Result<(LotState, u64), QueueError> {
    let found: Option<(String, i64)> = tx
        .query_row(
            "SELECT state, sheet_count FROM lots WHERE id = ?1",
            [lot_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (state, count) = found.ok_or_else(|| QueueError::NotFound(format!("lot {lot_id}")))?;
    let state = state.parse().map_err(|e| QueueError::Decode {
        what: format!("lot {lot_id}"),
        source: Box::new(e),
    })?;
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

/// [`Queue::close_lots`] within `tx`.
pub(crate) fn close_lots_in(
    tx: &Connection,
    practitioner_id: Option<&str>,
    max_sheets: usize,
    now: CompactTime,
    full_only: bool,
) -> Result<Vec<LotRow>, QueueError> {
    let max_sheets = max_sheets.max(1);
    let now = now.text();
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
pub(crate) fn lot_signed_in(
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
    crate::attachments::reference_in(tx, lot_id, signed_der, &at)?;
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
pub(crate) fn lot_sent_in(tx: &Connection, lot_id: &str) -> Result<bool, QueueError> {
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

impl Queue {
    /// Groups accepted sheets not yet in a lot by (practitioner, destination),
    /// optionally for one practitioner, into new lots of at most
    /// `max_sheets` sheets (0 is taken as 1), in insertion order. Lot numbers
    /// are allocated per practitioner (1, 2, …); lot id =
    /// `{practitioner_id}-{number:08}`; the lot is `Closed` with
    /// `closed_at = now`; its sheets become `InLot`. Returns the new lots.
    /// One transaction.
    pub fn close_lots(
        &mut self,
        practitioner_id: Option<&PractitionerId>,
        max_sheets: usize,
        now: CompactTime,
    ) -> Result<Vec<LotRow>, QueueError> {
        self.close_lots_of(practitioner_id.map(|p| p.as_str()), max_sheets, now, false)
    }

    /// [`Queue::close_lots`], closing only full lots (`max_sheets` sheets of one practitioner
    /// for one destination): what a lot closed by its size is; the rest waits for its age.
    pub fn close_full_lots(
        &mut self,
        max_sheets: usize,
        now: CompactTime,
    ) -> Result<Vec<LotRow>, QueueError> {
        self.close_lots_of(None, max_sheets, now, true)
    }

    fn close_lots_of(
        &mut self,
        practitioner_id: Option<&str>,
        max_sheets: usize,
        now: CompactTime,
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
            checked_row::<_, LotId>("lot", r, lot_row)
        })?;
        rows.map(|r| r?.map_err(QueueError::Damaged)).collect()
    }

    /// Lots in state `Signed` (waiting to be sent), oldest first, with the damaged ones
    /// reported by id in their place (`Err`): what the transport publishes.
    pub fn lots_to_send_checked(&self) -> Result<Vec<Result<LotRow, DamagedRow>>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {LOT_COLS} FROM lots WHERE state = 'signed' ORDER BY seq"
        ))?;
        let rows = stmt.query_map([], |r| checked_row::<_, LotId>("lot", r, lot_row))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Lots in state `Closed` (waiting for a signature), optionally for one
    /// practitioner, oldest first.
    pub fn lots_to_sign(
        &self,
        practitioner_id: Option<&PractitionerId>,
    ) -> Result<Vec<LotRow>, QueueError> {
        self.lots_in(LotState::Closed, practitioner_id.map(|p| p.as_str()))
    }

    /// The sheets waiting for a lot: how many (counted up to `cap`) and when the oldest was
    /// created. Cheap: it reads the state index, not the sheets.
    pub fn accepted_summary(&self, cap: usize) -> Result<(u64, Option<CompactTime>), QueueError> {
        let count: i64 = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM (SELECT 1 FROM sheets WHERE state = 'accepted' LIMIT ?1)",
            )?
            .query_row([limit_i64(cap)], |r| r.get(0))?;
        let oldest: Option<CompactTime> = self
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
    pub fn lot_sheets(&self, lot_id: &LotId) -> Result<Vec<SheetRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {SHEET_COLS} FROM {SHEETS_WITH_BODIES} WHERE lot_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([lot_id], |r| checked_row::<_, i64>("sheet", r, sheet_row))?;
        rows.map(|r| r?.map_err(QueueError::Damaged)).collect()
    }

    /// What a lot is built from: each sheet's DER and its DRE (if it has one), in insertion
    /// order (empty for an unknown lot).
    #[allow(clippy::type_complexity)]
    pub fn lot_bodies(
        &self,
        lot_id: &LotId,
    ) -> Result<Vec<(Vec<u8>, Option<Vec<u8>>)>, QueueError> {
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

    /// The ids of a lot's sheets, in order.
    pub fn lot_sheet_ids(&self, lot_id: &LotId) -> Result<Vec<SheetId>, QueueError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM sheets WHERE lot_id = ?1 ORDER BY id")?;
        let rows = stmt.query_map([lot_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One lot; [`QueueError::Damaged`] when its stored row is damaged.
    pub fn get_lot(&self, lot_id: &LotId) -> Result<Option<LotRow>, QueueError> {
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
            checked_row::<_, LotId>("lot", r, lot_row)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// `Closed` → `Signed`: stores the signed lot DER; its sheets `InLot` →
    /// `Signed`. [`QueueError::InvalidTransition`] if the lot is not
    /// `Closed` (so a lot is never signed twice), [`QueueError::NotFound`] if
    /// there is no such lot.
    pub fn mark_lot_signed(&mut self, lot_id: &LotId, signed_der: &[u8]) -> Result<(), QueueError> {
        self.mark_lot_signed_with_cms(lot_id, signed_der, None)
    }

    /// [`Queue::mark_lot_signed`], storing also the lot's CMS SignedData in the same transaction.
    pub fn mark_lot_signed_with_cms(
        &mut self,
        lot_id: &LotId,
        signed_der: &[u8],
        cms: Option<&[u8]>,
    ) -> Result<(), QueueError> {
        self.mark_lot_signed_with_dres(lot_id, signed_der, cms, &[])
    }

    /// [`Queue::mark_lot_signed_with_cms`], storing also the lot's DRE lots (AMC number, DER,
    /// number of DREs), to be sent to their AMCs, in the same transaction.
    pub fn mark_lot_signed_with_dres(
        &mut self,
        lot_id: &LotId,
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
    pub fn lot_cms(&self, lot_id: &LotId) -> Result<Option<Vec<u8>>, QueueError> {
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
    pub fn mark_lot_sent(&mut self, lot_id: &LotId) -> Result<bool, QueueError> {
        let tx = self.write()?;
        let changed = lot_sent_in(&tx, lot_id)?;
        tx.commit()?;
        Ok(changed)
    }

    /// Lots sent whose ARL has not come and whose last sending is at or before `cutoff` (a row
    /// time stamp: now less the ARL timeout), sent again fewer than `max_resends` times:
    /// what is to be sent again now, oldest lot first; damaged lots are left out.
    pub fn lots_to_resend(
        &self,
        cutoff: Stamp,
        max_resends: u32,
    ) -> Result<Vec<LotRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {LOT_COLS} FROM lots WHERE state = 'sent' AND sent_at <= ?1 AND resends < ?2 ORDER BY seq"
        ))?;
        // A damaged lot is not sent again (`store.verify` and the thorough doctor name it); the
        // others still are.
        let rows = stmt.query_map(params![cutoff.text(), max_resends], |r| {
            checked_row::<_, LotId>("lot", r, lot_row)
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
    pub fn next_resend_from(&self, max_resends: u32) -> Result<Option<Stamp>, QueueError> {
        Ok(self
            .conn
            .prepare_cached("SELECT MIN(sent_at) FROM lots WHERE state = 'sent' AND resends < ?1")?
            .query_row([max_resends], |r| r.get(0))?)
    }

    /// A lot sent again (the broker confirmed it again, or its spool file is written again):
    /// its resends count one more and its ARL is waited for from now, with a `lot.resent`
    /// event. Returns the attempt (1 for the first resend), or `None` when the lot is no
    /// longer `sent` (its ARL came meanwhile): nothing changed. An unknown lot is
    /// [`QueueError::NotFound`].
    pub fn mark_lot_resent(&mut self, lot_id: &LotId) -> Result<Option<u32>, QueueError> {
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
}
