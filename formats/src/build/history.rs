//! The participation forfaitaire across sheets: what a built sheet withholds per date of care
//! (kept by the queue as the beneficiary's history) and what that history leaves for a new
//! sheet.

use chrono::{Datelike, NaiveDate};

use super::parse_date;
use crate::fse::CareSheet;
use crate::rules;

/// The participation forfaitaire a sheet withholds, per date of care (participations and
/// cents): what the queue keeps, with the sheet's professional, as the beneficiary's history.
pub fn participation_by_date(sheet: &CareSheet) -> Vec<rules::Withheld> {
    let mut out: Vec<rules::Withheld> = Vec::new();
    for a in &sheet.acts {
        let Some(date) = parse_date(&a.date) else {
            continue;
        };
        if a.pf_cents == 0 {
            continue;
        }
        match out.iter_mut().find(|w| w.date == date) {
            Some(w) => {
                w.acts += 1;
                w.cents += a.pf_cents;
            }
            None => out.push(rules::Withheld {
                date,
                acts: 1,
                cents: a.pf_cents,
            }),
        }
    }
    out
}

/// What a beneficiary's participation history (all professionals) leaves for a sheet of
/// `professional` (the CPS holder's national id) on `date`: the participations withheld that
/// day with him, and the cents withheld that year with everyone.
///
/// A line whose professional is unknown (kept from before fsed recorded it) counts against
/// every professional's day, and one whose number of participations is unknown counts as a
/// full day: fsed errs towards withholding less, never more.
pub fn history_on(
    entries: &[rules::PfEntry],
    professional: &str,
    date: NaiveDate,
) -> rules::PfHistory {
    let mut h = rules::PfHistory::default();
    for e in entries {
        if e.date.year() != date.year() {
            continue;
        }
        h.same_year_cents = h.same_year_cents.saturating_add(e.cents);
        if e.date == date && e.professional.as_deref().is_none_or(|p| p == professional) {
            h.same_day_with_professional = h
                .same_day_with_professional
                .saturating_add(e.acts.unwrap_or(u32::MAX));
        }
    }
    h
}
