//! Sheet numbers: the per-practitioner counters (sheets and lots), allocation and
//! reservation of sheet numbers.

use rusqlite::{params, Connection};
use serde_json::json;

use crate::events::{event, stamp};
use crate::rows::to_i64;
use crate::{PractitionerId, Queue, QueueError};

/// Which per-practitioner counter to advance.
#[derive(Clone, Copy)]
pub(crate) enum Counter {
    Sheet,
    Lot,
}

/// Takes the next value of a practitioner's counter (1, 2, …).
pub(crate) fn take_counter(
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
pub(crate) fn reserve_in(
    tx: &Connection,
    practitioner_id: &str,
    count: u64,
) -> Result<u64, QueueError> {
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

impl Queue {
    /// Allocates the next sheet number for a practitioner (own transaction,
    /// starting at 1; never reused even if the sheet is never inserted). The
    /// allocation is an event (`sheet.number`), so a gap in the numbering
    /// can be explained.
    pub fn allocate_sheet_number(
        &mut self,
        practitioner_id: &PractitionerId,
    ) -> Result<u64, QueueError> {
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

    /// Reserves `count` sheet numbers for a practitioner in one transaction and returns the
    /// first: the caller hands them out in order. Numbers reserved and never used (a restart)
    /// are skipped, never reused; the reservation is an event (`sheet.numbers`) so a gap in
    /// the numbering can be explained.
    pub fn reserve_sheet_numbers(
        &mut self,
        practitioner_id: &PractitionerId,
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
}
