//! `payments.list`: per sheet in AMO tiers payant with a positive ARL, when the AMO paid it and
//! what it owes for paying late (décret 2016-1069, `fse_formats::late_payment`), with totals
//! per insurer.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use fse_formats::ack::{ArlStatus, PaymentOutcome};
use fse_formats::build::{parse_date, ymd};
use fse_formats::calendar::Region;
use fse_formats::fse::CareSheet;
use fse_formats::late_payment::{assess, paris_date, paris_date_of, LateCharge, Settlement};
use fse_queue::{SheetId, SheetTrail};
use serde_json::{json, Value};

use crate::api::params::params;
use crate::billing;
use crate::context::Context;
use crate::error::ApiError;

/// The region whose public holidays count (the sending deadline uses the same).
const REGION: Region = Region::Metropole;

/// Sheets read from the store per page while listing.
const PAGE: usize = 1000;

/// France's date at `now`.
pub(super) fn paris_today(now: DateTime<Utc>) -> NaiveDate {
    // A date in chrono's range plus two hours stays in range but for its very last day.
    paris_date_of(now.naive_utc()).unwrap_or_else(|| now.date_naive())
}

/// A sheet's late-payment figures.
pub(super) struct Late {
    arl_date: NaiveDate,
    paid_date: Option<NaiveDate>,
    amo_cents: u64,
    charge: LateCharge,
}

impl Late {
    /// The figures as JSON.
    pub(super) fn to_json(&self) -> Value {
        json!({
            "arl_date": ymd(self.arl_date),
            "paid_date": self.paid_date.map(ymd),
            "working_days": self.charge.working_days,
            "amo_cents": self.amo_cents,
            "rule": self.charge.rule.as_str(),
            "penalty_cents": self.charge.penalty_cents,
            "overdue": self.charge.overdue,
        })
    }
}

/// The late-payment figures of a sheet whose AMO pays the practitioner and whose lot has a
/// positive ARL, on `today`; `None` for any other sheet (or an insurer date that is not a
/// GeneralizedTime, which the ARL decoder would have refused).
pub(super) fn late_payment(t: &SheetTrail, care: &CareSheet, today: NaiveDate) -> Option<Late> {
    if !care.tiers_payant.amo {
        return None;
    }
    let arl = t.arl.as_ref().filter(|a| a.status == ArlStatus::Positive)?;
    if !matches!(
        t.sheet.state,
        fse_queue::SheetState::Acknowledged
            | fse_queue::SheetState::Paid
            | fse_queue::SheetState::Refused
    ) {
        return None;
    }
    let arl_date = paris_date(&arl.received_at)?;
    let (settlement, paid_date) = match &t.payment {
        None => (Settlement::Unpaid, None),
        Some(p) => match p.outcome {
            PaymentOutcome::Paid { .. } => {
                let on = paris_date(&p.issued_at)?;
                (Settlement::Paid(on), Some(on))
            }
            PaymentOutcome::Refused { .. } => (Settlement::Refused, None),
        },
    };
    let amo_cents = care.amounts.amo_cents;
    Some(Late {
        arl_date,
        paid_date,
        amo_cents,
        charge: assess(arl_date, settlement, today, amo_cents, REGION),
    })
}

/// `payments.list`'s parameters.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct P {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    overdue_only: bool,
    #[serde(default)]
    as_of: Option<String>,
}

/// A `YYYYMMDD` date parameter named `field`.
fn date_param(field: &str, v: Option<String>) -> Result<Option<NaiveDate>, ApiError> {
    v.map(|s| {
        parse_date(&s).ok_or_else(|| {
            ApiError::invalid(field, format!("{field}: a real day as YYYYMMDD, not {s:?}"))
        })
    })
    .transpose()
}

/// Per insurer: sheets, AMO owed, AMO paid, penalties owed, overdue sheets.
#[derive(Default)]
struct Total {
    sheets: u64,
    amo_cents: u64,
    paid_cents: u64,
    penalty_cents: u64,
    overdue: u64,
}

/// `payments.list`: the sheets in AMO tiers payant with a positive ARL dated `from`..=`to`
/// (France's dates), in id order, with their late-payment figures as of `as_of` (default
/// today); only the overdue ones with `overdue_only`; totals per insurer.
pub(in crate::api) async fn list(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    let P {
        from,
        to,
        overdue_only,
        as_of,
    } = params(p)?;
    let from = date_param("from", from)?;
    let to = date_param("to", to)?;
    let today = date_param("as_of", as_of)?.unwrap_or_else(|| paris_today(Utc::now()));
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(ApiError::invalid("to", "to: on or after from"));
        }
    }
    let mut sheets = Vec::new();
    let mut damaged = Vec::new();
    let mut totals: BTreeMap<String, Total> = BTreeMap::new();
    let mut after = SheetId(0);
    loop {
        let page = ctx
            .store
            .read(move |q| q.payable_trails(after, PAGE))
            .await?;
        let full = page.len() == PAGE;
        for entry in page {
            let t = match entry {
                Ok(t) => t,
                Err(d) => {
                    after = SheetId(d.id.parse().unwrap_or(after.get()));
                    damaged.push(super::damaged_entry(&d));
                    continue;
                }
            };
            after = t.sheet.id;
            let care = billing::stored_sheet(&t.sheet)?;
            let Some(late) = late_payment(&t, &care, today) else {
                continue;
            };
            let in_range =
                from.is_none_or(|f| late.arl_date >= f) && to.is_none_or(|x| late.arl_date <= x);
            if !in_range || (overdue_only && !late.charge.overdue) {
                continue;
            }
            let paid_cents = match t.payment.as_ref().map(|p| &p.outcome) {
                Some(PaymentOutcome::Paid { amount_cents }) => *amount_cents,
                _ => 0,
            };
            let total = totals.entry(t.sheet.destination.clone()).or_default();
            total.sheets += 1;
            total.amo_cents = total.amo_cents.saturating_add(late.amo_cents);
            total.paid_cents = total.paid_cents.saturating_add(paid_cents);
            total.penalty_cents = total
                .penalty_cents
                .saturating_add(late.charge.penalty_cents);
            total.overdue += u64::from(late.charge.overdue);
            sheets.push(row(&t, &late, paid_cents));
        }
        if !full {
            break;
        }
    }
    Ok(json!({
        "as_of": ymd(today),
        "sheets": sheets,
        "damaged": damaged,
        "totals": totals.into_iter().map(|(insurer, t)| json!({
            "insurer": insurer, "sheets": t.sheets, "amo_cents": t.amo_cents,
            "paid_cents": t.paid_cents, "penalty_cents": t.penalty_cents, "overdue": t.overdue,
        })).collect::<Vec<_>>(),
    }))
}

/// One sheet's line of `payments.list`.
fn row(t: &SheetTrail, late: &Late, paid_cents: u64) -> Value {
    let mut v = late.to_json();
    v["id"] = json!(t.sheet.id);
    v["number"] = json!(t.sheet.number);
    v["lot_id"] = json!(t.sheet.lot_id);
    v["insurer"] = json!(t.sheet.destination);
    v["state"] = json!(t.sheet.state.as_str());
    v["paid_cents"] = json!(paid_cents);
    v
}
