//! The participation forfaitaire withheld per beneficiary: its history and the caps a
//! new sheet is checked against.

use std::collections::BTreeMap;

use rusqlite::{params, Connection};

use crate::{NewSheet, PfRecord, Queue, QueueError};

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
pub(crate) fn check_caps(tx: &Connection, new: &NewSheet) -> Result<(), QueueError> {
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
        let mine = |p: &Option<String>| p.as_deref().is_none_or(|p| new.practitioner_id == p);
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

impl Queue {
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
}
