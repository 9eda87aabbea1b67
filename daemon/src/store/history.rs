//! The participation history each sheet is priced on, kept in memory per beneficiary, per
//! date of care and professional: what the committer adds after each commit, and the lines a
//! sheet reads.

use std::collections::HashMap;
use std::sync::Mutex;

use fse_queue::{Inserted, NewSheet, PfRecord, QueueError};

use super::lock;

/// The participation withheld per beneficiary (key of `fse_formats::build::history_key`),
/// date of care and professional, as committed: each entry holds every date from the year
/// before it was read from the file onwards, and the committer adds what each commit withholds
/// (with the sheet's practitioner). An entry may only lack what a commit has just added (a
/// sheet priced on it then passes the caps, checked again in the commit, or is refused and
/// priced again from the file); it never holds what the file does not, so a sheet is never
/// priced to withhold less than the caps allow.
#[derive(Default)]
pub(super) struct Histories {
    /// Bumped by every change to the participation the entries hold: a read from the file that
    /// started before it is not kept.
    pub(super) generation: u64,
    /// Each beneficiary's history, by `fse_formats::build::history_key`.
    pub(super) by_beneficiary: HashMap<String, History>,
}

/// One beneficiary's history: per date of care (`YYYYMMDD`), a line per professional.
pub(super) type History = std::collections::BTreeMap<String, Vec<Line>>;

/// What was withheld on a date with one professional (`None`: unknown), its participations
/// (`None`: unknown) and cents.
pub(super) type Line = (Option<String>, Option<u32>, u64);

/// `history`'s lines of care dates `from` to `until`, in date order.
pub(super) fn lines_in(history: &History, from: &str, until: &str) -> Vec<PfRecord> {
    history
        .range(from.to_string()..=until.to_string())
        .flat_map(|(date, lines)| {
            lines.iter().map(|(professional, acts, cents)| PfRecord {
                care_date: date.clone(),
                professional: professional.clone(),
                acts: *acts,
                cents: *cents,
            })
        })
        .collect()
}

/// Adds to the histories in memory the participation the sheets just committed withhold (a
/// sheet refused, or one already stored under its key, withholds nothing new).
pub(super) fn remember_withheld(
    histories: &Mutex<Histories>,
    news: &[NewSheet],
    inserted: &[Result<Inserted, QueueError>],
) {
    let mut withheld = news
        .iter()
        .zip(inserted)
        .filter(|(_, r)| matches!(r, Ok(Inserted::New(_))))
        .filter(|(new, _)| new.participation.iter().any(|w| w.cents > 0))
        .peekable();
    if withheld.peek().is_none() {
        return;
    }
    let mut cache = lock(histories);
    cache.generation += 1;
    for (new, _) in withheld {
        let Some(h) = cache.by_beneficiary.get_mut(&new.beneficiary_key) else {
            continue;
        };
        for w in new.participation.iter().filter(|w| w.cents > 0) {
            let lines = h.entry(w.care_date.clone()).or_default();
            let mine = lines
                .iter_mut()
                .find(|(p, _, _)| p.as_deref() == Some(new.practitioner_id.as_str()));
            match mine {
                Some((_, acts, cents)) => {
                    *acts = acts.map(|a| a.saturating_add(w.acts));
                    *cents = cents.saturating_add(w.cents);
                }
                None => lines.push((
                    Some(new.practitioner_id.as_str().to_owned()),
                    Some(w.acts),
                    w.cents,
                )),
            }
        }
    }
}
