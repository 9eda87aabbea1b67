//! DRE lots: those waiting for their AMC, their sending, and a lot's DRE lots.

use rusqlite::params;
use serde_json::json;

use crate::events::{event, stamp};
use crate::rows::{checked_row, get_u64};
use crate::{integrity, DamagedRow, LotId, Queue, QueueError};

impl Queue {
    /// DRE lots waiting to be sent to their AMC, oldest lot first: (lot id, AMC number, DER).
    /// [`QueueError::Damaged`] names the first damaged one (see
    /// [`Queue::dre_lots_to_send_checked`]).
    #[allow(clippy::type_complexity)]
    pub fn dre_lots_to_send(&self) -> Result<Vec<(LotId, String, Vec<u8>)>, QueueError> {
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
    ) -> Result<Vec<Result<(LotId, String, Vec<u8>), DamagedRow>>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.lot_id || '/' || d.amc, d.lot_id, d.amc, d.der, d.checksum FROM dre_lots d \
             JOIN lots l ON l.id = d.lot_id WHERE d.state = 'signed' ORDER BY l.seq, d.amc",
        )?;
        let rows = stmt.query_map([], |r| {
            checked_row::<_, String>("dre_lot", r, |r| {
                let (lot_id, amc, der): (LotId, String, Vec<u8>) =
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
    pub fn mark_dre_lot_sent(&mut self, lot_id: &LotId, amc: &str) -> Result<(), QueueError> {
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
    pub fn lot_dre_lots(&self, lot_id: &LotId) -> Result<Vec<(String, u64, String)>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT amc, dres, state FROM dre_lots WHERE lot_id = ?1 ORDER BY amc",
        )?;
        let rows = stmt.query_map([lot_id], |r| Ok((r.get(0)?, get_u64(r, 1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
