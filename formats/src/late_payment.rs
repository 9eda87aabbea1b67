//! Late payment in tiers payant (décret 2016-1069, Code de la sécurité sociale art.
//! L161-36-3 and D161-1 ff.): what the AMO owes the practitioner when it pays a sheet late.
//!
//! The AMO pays an electronic care sheet in tiers payant within 7 working days. Paid on the
//! 8th or 9th working day it owes a flat 1 € per sheet; paid on the 10th or later it owes
//! 10 % of its share (the AMO amount of the sheet, participation forfaitaire deducted).
//!
//! # The count (the convention fsed applies)
//!
//! `n` is the number of working days `d` with `ARL date < d ≤ payment date`: the day of the
//! positive ARL does not count, the day of payment does. Working days are Monday to Friday
//! except the French public holidays of [`crate::calendar`] (Easter Monday, Ascension, Whit
//! Monday and the eight fixed days; Alsace-Moselle adds Good Friday and 26 December). Both
//! dates are the insurer's, taken from its signed returns (the ARL's `receivedAt`, the
//! payment return's `issuedAt`, both UTC) and read as calendar dates in France's time zone
//! (Europe/Paris: UTC+1, UTC+2 from the last Sunday of March 01:00 UTC to the last Sunday of
//! October 01:00 UTC), see [`paris_date`].
//!
//! - `n ≤ 7`: on time, nothing owed ([`LateRule::OnTime`]);
//! - `n = 8` or `9`: 100 cents ([`LateRule::Flat`]);
//! - `n ≥ 10`: 10 % of the AMO share, rounded to the nearest cent, half a cent up
//!   (`(amo_cents + 5) / 10` in integers: 26.45 € → 2.645 € → 2.65 €) ([`LateRule::Percent`]).
//!
//! A sheet not paid yet is overdue once `n`, counted up to today, passes 7; it is shown with
//! the penalty it would owe if paid today. A refused sheet owes nothing.
//!
//! Pure: today is a parameter.

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta};
use serde::{Deserialize, Serialize};

use crate::calendar::{is_working_day, Region};

/// Working days the AMO has to pay a sheet in tiers payant.
pub const PAYMENT_DAYS: u32 = 7;
/// The last working day that owes the flat penalty; from the next one, 10 %.
pub const FLAT_UNTIL_DAY: u32 = 9;
/// The flat penalty of a sheet paid on the 8th or 9th working day, in cents.
pub const FLAT_PENALTY_CENTS: u64 = 100;

/// Which rule a sheet's payment falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LateRule {
    /// Paid (or, unpaid, still) within 7 working days: nothing owed.
    OnTime,
    /// Paid on working day 8 or 9: 1 € per sheet.
    Flat,
    /// Paid on working day 10 or later: 10 % of the AMO share.
    Percent,
    /// The insurer refused the sheet: no payment, no penalty.
    Refused,
}

impl LateRule {
    /// The rule's name as the API and the CSV show it.
    pub fn as_str(self) -> &'static str {
        match self {
            LateRule::OnTime => "on_time",
            LateRule::Flat => "flat_1_eur",
            LateRule::Percent => "ten_percent",
            LateRule::Refused => "refused",
        }
    }
}

/// Where a sheet's payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Paid on this date (France's calendar date of the payment return).
    Paid(NaiveDate),
    /// Refused by the insurer.
    Refused,
    /// No payment return yet.
    Unpaid,
}

/// What a sheet's payment owes, by the rule of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateCharge {
    /// Working days counted: after the ARL date up to the payment date (or up to today, unpaid).
    pub working_days: u32,
    /// The rule applied.
    pub rule: LateRule,
    /// The penalty owed (or, unpaid, owed if paid today), in cents.
    pub penalty_cents: u64,
    /// Unpaid and past the 7 working days.
    pub overdue: bool,
}

/// Working days `d` with `after < d ≤ until` in `region`; 0 when `until ≤ after`.
pub fn working_days_between(after: NaiveDate, until: NaiveDate, region: Region) -> u32 {
    let mut n = 0u32;
    let mut d = after;
    while d < until {
        match d.succ_opt() {
            Some(next) => d = next,
            None => break,
        }
        if is_working_day(d, region) {
            n = n.saturating_add(1);
        }
    }
    n
}

/// The penalty for a payment on working day `working_days`, on an AMO share of `amo_cents`.
pub fn penalty(working_days: u32, amo_cents: u64) -> (LateRule, u64) {
    if working_days <= PAYMENT_DAYS {
        (LateRule::OnTime, 0)
    } else if working_days <= FLAT_UNTIL_DAY {
        (LateRule::Flat, FLAT_PENALTY_CENTS)
    } else {
        // 10 %, half a cent rounded up: (a + 5) / 10 cannot overflow below u64::MAX - 5.
        (LateRule::Percent, amo_cents.saturating_add(5) / 10)
    }
}

/// What a sheet of AMO share `amo_cents`, positively acknowledged on `arl_date`, owes as it
/// stands on `today` (all dates France's calendar dates).
pub fn assess(
    arl_date: NaiveDate,
    settlement: Settlement,
    today: NaiveDate,
    amo_cents: u64,
    region: Region,
) -> LateCharge {
    match settlement {
        Settlement::Refused => LateCharge {
            working_days: 0,
            rule: LateRule::Refused,
            penalty_cents: 0,
            overdue: false,
        },
        Settlement::Paid(paid) => {
            let working_days = working_days_between(arl_date, paid, region);
            let (rule, penalty_cents) = penalty(working_days, amo_cents);
            LateCharge {
                working_days,
                rule,
                penalty_cents,
                overdue: false,
            }
        }
        Settlement::Unpaid => {
            let working_days = working_days_between(arl_date, today, region);
            let (rule, penalty_cents) = penalty(working_days, amo_cents);
            LateCharge {
                working_days,
                rule,
                penalty_cents,
                overdue: working_days > PAYMENT_DAYS,
            }
        }
    }
}

/// The last Sunday of `month` in `year`.
fn last_sunday(year: i32, month: u32) -> Option<NaiveDate> {
    let first_next = if month == 12 {
        NaiveDate::from_ymd_opt(year.checked_add(1)?, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    let last = first_next.pred_opt()?;
    let back = last.weekday().num_days_from_sunday();
    last.checked_sub_days(chrono::Days::new(u64::from(back)))
}

/// France's offset from UTC at the UTC time `utc`, in hours: 2 in summer time (from the last
/// Sunday of March 01:00 UTC to the last Sunday of October 01:00 UTC, the EU rule), else 1.
fn paris_offset_hours(utc: NaiveDateTime) -> i64 {
    let y = utc.year();
    let start = last_sunday(y, 3).and_then(|d| d.and_hms_opt(1, 0, 0));
    let end = last_sunday(y, 10).and_then(|d| d.and_hms_opt(1, 0, 0));
    match (start, end) {
        (Some(s), Some(e)) if utc >= s && utc < e => 2,
        _ => 1,
    }
}

/// The calendar date in France of a UTC ASN.1 GeneralizedTime `YYYYMMDDHHMMSSZ` (as the
/// insurer's returns carry it); `None` when the text is not one.
pub fn paris_date(generalized_utc: &str) -> Option<NaiveDate> {
    let text = generalized_utc.strip_suffix('Z')?;
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let utc = NaiveDateTime::parse_from_str(text, "%Y%m%d%H%M%S").ok()?;
    let local = utc.checked_add_signed(TimeDelta::hours(paris_offset_hours(utc)))?;
    Some(local.date())
}

/// France's calendar date at the UTC time `utc`.
pub fn paris_date_of(utc: NaiveDateTime) -> Option<NaiveDate> {
    Some(
        utc.checked_add_signed(TimeDelta::hours(paris_offset_hours(utc)))?
            .date(),
    )
}

#[cfg(test)]
#[path = "late_payment_tests.rs"]
mod tests;
