//! Payment returns: applying them to acknowledged sheets and reading them back.

use std::str::FromStr;

use fse_formats::ack::{PaymentOutcome, PaymentReturn};
use rusqlite::{params, OptionalExtension};
use serde_json::json;

use crate::events::event;
use crate::rows::{get_u64, limit_i64};
use crate::{LotId, PaymentRow, PaymentsApplied, Queue, QueueError, SheetId, SheetState, Stamp};

/// What a payment outcome makes of its sheet: its new state, the amount paid, the refusal's
/// code and reason, and the event's kind.
fn outcome_columns(
    outcome: &PaymentOutcome,
) -> (SheetState, u64, Option<&str>, Option<&str>, &'static str) {
    match outcome {
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
    }
}

impl Queue {
    /// Applies one payment return, in one transaction: each sheet of the lot it names that is
    /// acknowledged becomes `paid` (with its amount) or `refused` (with its code and reason),
    /// with its event. A sheet that already has its payment return is a duplicate and stays
    /// as it is; a number not in the lot, or a sheet the ARL rejected, is ignored (and said).
    /// When some named sheet is still waiting for its ARL, nothing is applied
    /// ([`PaymentsApplied::not_yet`]): the return is to be offered again once the ARL is in.
    pub fn record_payments(&mut self, ret: &PaymentReturn) -> Result<PaymentsApplied, QueueError> {
        let tx = self.write()?;
        let mut out = PaymentsApplied::default();
        let now = Stamp::now();
        let at = now.text();
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
                let state = SheetState::from_str(&state).map_err(|e| QueueError::Decode {
                    what: format!("sheet {id}"),
                    source: Box::new(e),
                })?;
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
                let (to, amount, code, reason, kind) = outcome_columns(&p.outcome);
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
                    sheet_id: SheetId(id),
                    number: p.sheet_number,
                    lot_id: LotId::new(ret.lot_id.as_str()),
                    outcome: p.outcome.clone(),
                    insurer: ret.insurer.clone(),
                    issued_at: ret.issued_at.clone(),
                    recorded_at: now,
                });
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Payment returns recorded, newest first, at most `limit`; only those of `lot_id` when given.
    pub fn payments(
        &self,
        lot_id: Option<&LotId>,
        limit: usize,
    ) -> Result<Vec<PaymentRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT sheet_id, number, lot_id, outcome, amount_cents, code, reason, insurer, issued_at, recorded_at \
             FROM payments WHERE ?1 IS NULL OR lot_id = ?1 ORDER BY recorded_at DESC, sheet_id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![lot_id, limit_i64(limit)], payment_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A `payments` row read in the column order of [`Queue::payments`].
pub(crate) fn payment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PaymentRow> {
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
}
