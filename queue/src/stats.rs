//! Figures: counts per state, the backlog, resends and dead-lettered returns.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};

use crate::events::{event, stamp};
use crate::rows::get_u64;
use crate::{Backlog, LotState, Queue, QueueError, ResendStats, SheetState, Stamp, Stats};

/// How many sheets wait to be sent, the oldest's creation and the nearest deadline: the open
/// sheets, and those of the lots closed or signed, each found through an index (this runs for
/// every status line and `system.doctor`; the sheets sent are most of the table).
pub(crate) const BACKLOG: &str = "SELECT COUNT(*), MIN(created_at), MIN(deadline) FROM (
     SELECT created_at, deadline FROM sheets WHERE state = 'accepted'
     UNION ALL
     SELECT s.created_at, s.deadline FROM lots l JOIN sheets s ON s.lot_id = l.id
      WHERE l.state IN ('closed', 'signed') AND s.state IN ('in_lot', 'signed'))";

impl Queue {
    /// Resends over every lot, and the lots without an ARL: still being sent again, or given
    /// up (`max_resends` resends made and the last one also unanswered at `cutoff`, now less
    /// the ARL timeout).
    pub fn resend_stats(&self, cutoff: Stamp, max_resends: u32) -> Result<ResendStats, QueueError> {
        let (total, waiting, given_up) = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(SUM(resends), 0),
                        COALESCE(SUM(state = 'sent' AND resends > 0
                                     AND NOT (resends >= ?2 AND sent_at <= ?1)), 0),
                        COALESCE(SUM(state = 'sent' AND resends >= ?2 AND sent_at <= ?1), 0)
                 FROM lots",
            )?
            .query_row(params![cutoff.text(), max_resends], |r| {
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
}
