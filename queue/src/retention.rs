//! Retention and deadlines: the lots to archive and purge, purging them, and the sheets
//! near their sending deadline.

use serde_json::json;

use crate::events::{event, stamp};
use crate::lots::lot_state;
use crate::rows::{checked_row, lot_row, LOT_COLS};
use crate::{DeadlineAlarm, LotId, LotRow, LotState, Queue, QueueError, Stamp};

impl Queue {
    /// Acknowledged lots last changed before `before`: what retention may archive and purge,
    /// oldest first.
    pub fn lots_to_purge(&self, before: Stamp) -> Result<Vec<LotRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {LOT_COLS} FROM lots WHERE state = 'acknowledged' AND updated_at < ?1 ORDER BY seq"
        ))?;
        let rows = stmt.query_map([before.text()], |r| {
            checked_row::<_, LotId>("lot", r, lot_row)
        })?;
        rows.map(|r| r?.map_err(QueueError::Damaged)).collect()
    }

    /// Purges an acknowledged lot, once archived: its sheets, its ARL and the lot row go, the
    /// participation its sheets withheld is kept (the caps of the year still count it), and a
    /// `lot.purged` event records it. One transaction; returns the number of sheets purged.
    pub fn purge_lot(&mut self, lot_id: &LotId) -> Result<u64, QueueError> {
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
            "DELETE FROM attachments WHERE sheet_id IN (SELECT id FROM sheets WHERE lot_id = ?1)",
            [lot_id],
        )?;
        // The payment returns go with their sheets (retention archived them first): their
        // rows reference the sheets, so a paid lot could not be purged otherwise.
        tx.execute(
            "DELETE FROM payments WHERE lot_id = ?1 OR sheet_id IN (SELECT id FROM sheets WHERE lot_id = ?1)",
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
}
