//! ARLs: applying them to a lot and its sheets, reading them back, and the lots whose ARL
//! is missing.

use std::collections::{BTreeMap, BTreeSet};

use fse_formats::ack::{Arl, ArlStatus};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

use crate::events::{event, stamp};
use crate::lots::lot_state;
use crate::rows::{get_u64, limit_i64};
use crate::{AckRow, ArlAlarm, ArlOutcome, LotId, LotState, Queue, QueueError, SheetState, Stamp};

impl Queue {
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
        let sheets = arl_sheets(&tx, lot_id, sheet_from, count)?;
        let (per_sheet, whole_lot) = arl_reasons(arl, &sheets);

        let at = stamp();
        let rejections = serde_json::to_string(&arl.rejections)?;
        tx.execute(
            "INSERT INTO acks (lot_id, status, der, received_at, rejections, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![lot_id, status, der, arl.received_at, rejections, at],
        )?;
        tx.execute(
            "UPDATE lots SET state = ?2, updated_at = ?3 WHERE id = ?1",
            params![lot_id, lot_to.as_str(), at],
        )?;
        let (acknowledged, rejected) =
            apply_arl_to_sheets(&tx, &sheets, &per_sheet, &whole_lot, &at)?;
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

    /// ARLs recorded, newest first, at most `limit`; only the one of `lot_id` when given.
    pub fn acks(&self, lot_id: Option<&LotId>, limit: usize) -> Result<Vec<AckRow>, QueueError> {
        let ids: Vec<LotId> = {
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
    pub fn get_ack(&self, lot_id: &LotId) -> Result<Option<AckRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT lot_id, status, der, received_at, rejections, recorded_at FROM acks WHERE lot_id = ?1",
        )?;
        let raw: Option<(LotId, String, Vec<u8>, String, String, Stamp)> = stmt
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
        let rejections = serde_json::from_str(&rejections).map_err(|e| QueueError::Decode {
            what: format!("ARL of lot {lot_id}: rejections"),
            source: Box::new(e),
        })?;
        Ok(Some(AckRow {
            lot_id,
            status,
            der,
            received_at,
            rejections,
            recorded_at,
        }))
    }

    /// The lots whose ARL is missing: sent, no ARL, and either sent again already or last sent
    /// at or before `cutoff` (now less the ARL timeout); `given_up` once `max_resends` resends
    /// are made. Oldest lot first.
    pub fn arl_alarms(&self, cutoff: Stamp, max_resends: u32) -> Result<Vec<ArlAlarm>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, practitioner_id, destination, sheet_count, sent_at, resends,
                    resends >= ?2 AND sent_at <= ?1
             FROM lots WHERE state = 'sent' AND (resends > 0 OR sent_at <= ?1) ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![cutoff.text(), max_resends], |r| {
            Ok(ArlAlarm {
                lot_id: r.get(0)?,
                practitioner_id: r.get(1)?,
                destination: r.get(2)?,
                sheet_count: get_u64(r, 3)?,
                // Every lot `sent` has its time of sending (schema 16 gave it to those before).
                sent_at: r.get(4)?,
                resends: u32::try_from(get_u64(r, 5)?).unwrap_or(u32::MAX),
                given_up: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The sheets (id, number) of lot `lot_id` in state `sheet_from`, which the ARL applies to;
/// their count must be the lot's `count`.
fn arl_sheets(
    tx: &Connection,
    lot_id: &str,
    sheet_from: SheetState,
    count: u64,
) -> Result<Vec<(i64, u64)>, QueueError> {
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
    Ok(sheets)
}

/// The reasons of an ARL's rejections (`CODE: reason`): per sheet number of the lot's
/// `sheets`, and those that reject the whole lot (no sheet number, a number not in the lot,
/// or a negative ARL without any rejection).
fn arl_reasons(arl: &Arl, sheets: &[(i64, u64)]) -> (BTreeMap<u64, Vec<String>>, Vec<String>) {
    let numbers: BTreeSet<u64> = sheets.iter().map(|(_, n)| *n).collect();
    let mut per_sheet: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut whole_lot: Vec<String> = Vec::new();
    for r in &arl.rejections {
        let text = format!("{}: {}", r.code, r.reason);
        match r.sheet_number {
            Some(n) if numbers.contains(&n) => per_sheet.entry(n).or_default().push(text),
            Some(n) => whole_lot.push(format!("{text} (for sheet {n}, which is not in this lot)")),
            None => whole_lot.push(text),
        }
    }
    if arl.status == ArlStatus::Negative && arl.rejections.is_empty() {
        whole_lot.push("NEGATIVE: negative ARL without a reason".into());
    }
    (per_sheet, whole_lot)
}

/// Moves each of `sheets` to `Acknowledged`, or to `Rejected` with the reasons that apply
/// to it (its own, then the whole lot's, joined by `; `), at `at`. Returns how many were
/// acknowledged and how many rejected.
fn apply_arl_to_sheets(
    tx: &Connection,
    sheets: &[(i64, u64)],
    per_sheet: &BTreeMap<u64, Vec<String>>,
    whole_lot: &[String],
    at: &str,
) -> Result<(u64, u64), QueueError> {
    let (mut acknowledged, mut rejected) = (0u64, 0u64);
    let mut upd = tx.prepare_cached(
        "UPDATE sheets SET state = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1",
    )?;
    for (id, number) in sheets {
        let reasons: Vec<&str> = per_sheet
            .get(number)
            .into_iter()
            .flatten()
            .chain(whole_lot)
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
    Ok((acknowledged, rejected))
}
