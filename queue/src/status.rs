//! Where a sheet stands, from created to paid: the sheet, its lot (closed, signed, sent and
//! how many times), its lot's ARL and its payment return, read together. Read-only: it needs
//! no column of its own, everything is already stored by the aggregates that write it.

use rusqlite::{params, OptionalExtension};

use crate::rows::{checked_row, get_u64, limit_i64, sheet_row, SHEETS_WITH_BODIES, SHEET_COLS};
use crate::{
    AckRow, DamagedRow, LotId, LotRow, PaymentRow, Queue, QueueError, SheetId, SheetRow, Stamp,
};

/// A lot's sending: when it was last sent and how many times it was sent again since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotSending {
    /// When it was last sent (`None`: never sent).
    pub sent_at: Option<Stamp>,
    /// How many times it was sent again after the first (ARL awaited too long).
    pub resends: u32,
}

/// Everything stored about one sheet's way from created to paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetTrail {
    /// The sheet.
    pub sheet: SheetRow,
    /// Its lot, when it is in one.
    pub lot: Option<LotRow>,
    /// Its lot's sending, when it is in one.
    pub sending: Option<LotSending>,
    /// Its lot's ARL, when one came.
    pub arl: Option<AckRow>,
    /// Its payment return, when one came.
    pub payment: Option<PaymentRow>,
}

impl Queue {
    /// The ids of the sheets numbered `number` (a number is unique per practitioner, so one
    /// or, in a practice of several, more), in id order.
    pub fn sheet_ids_by_number(&self, number: u64) -> Result<Vec<SheetId>, QueueError> {
        let number = i64::try_from(number).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM sheets WHERE number = ?1 ORDER BY id LIMIT 16")?;
        let rows = stmt.query_map([number], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Everything stored about sheet `id`: `None` when there is no such sheet (never made,
    /// or purged with its lot once archived).
    pub fn sheet_trail(&self, id: SheetId) -> Result<Option<SheetTrail>, QueueError> {
        match self.get_sheet(id)? {
            Some(sheet) => Ok(Some(self.trail_of(sheet)?)),
            None => Ok(None),
        }
    }

    /// The trails of the sheets whose lot has a positive ARL (acknowledged, paid or refused
    /// sheets), id above `after_id`, in id order, at most `limit`; a damaged sheet is named
    /// in its place.
    pub fn payable_trails(
        &self,
        after_id: SheetId,
        limit: usize,
    ) -> Result<Vec<Result<SheetTrail, DamagedRow>>, QueueError> {
        let rows: Vec<Result<SheetRow, DamagedRow>> = {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {SHEET_COLS} FROM {SHEETS_WITH_BODIES} \
                 WHERE id > ?1 AND state IN ('acknowledged','paid','refused') \
                 AND lot_id IN (SELECT lot_id FROM acks WHERE status = 'positive') \
                 ORDER BY id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![after_id, limit_i64(limit)], |r| {
                checked_row::<_, i64>("sheet", r, sheet_row)
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(match row {
                Ok(sheet) => Ok(self.trail_of(sheet)?),
                Err(d) => Err(d),
            });
        }
        Ok(out)
    }

    /// The lot, sending, ARL and payment of `sheet`.
    fn trail_of(&self, sheet: SheetRow) -> Result<SheetTrail, QueueError> {
        let (lot, sending, arl) = match &sheet.lot_id {
            Some(lot_id) => (
                self.get_lot(lot_id)?,
                self.lot_sending(lot_id)?,
                self.get_ack(lot_id)?,
            ),
            None => (None, None, None),
        };
        let payment = self.sheet_payment(sheet.id)?;
        Ok(SheetTrail {
            sheet,
            lot,
            sending,
            arl,
            payment,
        })
    }

    /// When lot `lot_id` was last sent and how many times it was sent again.
    fn lot_sending(&self, lot_id: &LotId) -> Result<Option<LotSending>, QueueError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT sent_at, resends FROM lots WHERE id = ?1")?;
        Ok(stmt
            .query_row([lot_id], |r| {
                Ok(LotSending {
                    sent_at: r.get(0)?,
                    resends: u32::try_from(get_u64(r, 1)?).unwrap_or(u32::MAX),
                })
            })
            .optional()?)
    }

    /// The payment return recorded for sheet `id`, if any.
    fn sheet_payment(&self, id: SheetId) -> Result<Option<PaymentRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT sheet_id, number, lot_id, outcome, amount_cents, code, reason, insurer, issued_at, recorded_at \
             FROM payments WHERE sheet_id = ?1",
        )?;
        Ok(stmt
            .query_row([id], crate::payments::payment_row)
            .optional()?)
    }
}
