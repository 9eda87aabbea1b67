//! `fse.status`: where a sheet is, from created to paid, what it owes and is owed, and
//! whether sending it again is safe.

use chrono::Utc;
use fse_formats::api;
use fse_formats::fse::CareSheet;
use fse_queue::{SheetId, SheetState, SheetTrail};
use serde_json::{json, Value};

use super::payments::{late_payment, paris_today};
use crate::api::params::params;
use crate::billing;
use crate::context::Context;
use crate::error::ApiError;

/// `fse.status`'s parameters: the sheet by its id or by its number (exactly one).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct P {
    #[serde(default)]
    sheet: Option<i64>,
    #[serde(default)]
    number: Option<u64>,
}

/// `fse.status`: a sheet's way from created to paid (`NOT_FOUND` when there is no such
/// sheet, or it was purged once archived).
pub(in crate::api) async fn status(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    let P { sheet, number } = params(p)?;
    if sheet.is_some_and(|id| id < 1) {
        return Err(ApiError::invalid("sheet", "sheet: a sheet id, 1 or more"));
    }
    if number == Some(0) {
        return Err(ApiError::invalid(
            "number",
            "number: a sheet number, 1 or more",
        ));
    }
    let id = match (sheet, number) {
        (Some(id), None) => SheetId(id),
        (None, Some(n)) => {
            let ids = ctx.store.read(move |q| q.sheet_ids_by_number(n)).await?;
            match ids.as_slice() {
                [id] => *id,
                [] => {
                    return Err(ApiError::new(
                        api::NOT_FOUND,
                        format!("no sheet numbered {n}"),
                        Some("number"),
                    ))
                }
                _ => {
                    return Err(ApiError::invalid(
                        "number",
                        format!(
                        "{} sheets are numbered {n} (one per practitioner): give `sheet`, the id",
                        ids.len()
                    ),
                    ))
                }
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "sheet",
                "give exactly one of `sheet` (the id) and `number`",
            ))
        }
    };
    let trail = ctx
        .store
        .read(move |q| q.sheet_trail(id))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                api::NOT_FOUND,
                format!(
                    "no sheet {} (never made, or purged once archived)",
                    id.get()
                ),
                Some(if number.is_some() { "number" } else { "sheet" }),
            )
        })?;
    let care = billing::stored_sheet(&trail.sheet)?;
    Ok(render(&trail, &care, paris_today(Utc::now())))
}

/// The JSON of a sheet's trail as it stands on `today` (France's date).
fn render(t: &SheetTrail, care: &CareSheet, today: chrono::NaiveDate) -> Value {
    let s = &t.sheet;
    let lot = t.lot.as_ref().map(|l| {
        json!({
            "id": l.id, "state": l.state.as_str(), "closed_at": l.closed_at,
            "signed": l.signed_der.is_some(), "sheet_count": l.sheet_count,
        })
    });
    let sent = t.sending.as_ref().and_then(|snd| {
        snd.sent_at
            .map(|at| json!({ "last_sent_at": at, "times": u64::from(snd.resends) + 1 }))
    });
    let arl = t.arl.as_ref().map(|a| {
        json!({
            "status": a.status, "date": a.received_at, "recorded_at": a.recorded_at,
            "reason": if matches!(s.state, SheetState::Rejected) { s.reason.clone() } else { None },
        })
    });
    let payment = t.payment.as_ref().map(to_json);
    let (safe, why) = resend_safe(t);
    json!({
        "id": s.id, "number": s.number, "state": s.state.as_str(),
        "practitioner_id": s.practitioner_id, "destination": s.destination,
        "created_at": s.created_at, "updated_at": s.updated_at, "reason": s.reason,
        "amounts": {
            "total_cents": care.amounts.total_cents, "amo_cents": care.amounts.amo_cents,
            "amc_cents": care.amounts.amc_cents, "patient_cents": care.amounts.patient_cents,
            "due_cents": care.amounts.due_cents,
        },
        "tiers_payant": { "amo": care.tiers_payant.amo, "amc": care.tiers_payant.amc },
        "lot": lot, "sent": sent, "arl": arl, "payment": payment,
        "late_payment": late_payment(t, care, today).map(|l| l.to_json()),
        "resend_safe": { "safe": safe, "reason": why },
    })
}

/// A payment row as JSON (its serde form: plain fields and string keys, which cannot fail).
fn to_json(p: &fse_queue::PaymentRow) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}

/// Whether sending the sheet again is safe, and why.
fn resend_safe(t: &SheetTrail) -> (bool, String) {
    let times = t
        .sending
        .as_ref()
        .filter(|s| s.sent_at.is_some())
        .map_or(0, |s| u64::from(s.resends) + 1);
    match t.sheet.state {
        SheetState::Accepted => (true, "never sent: fsed puts it in its next lot and sends it".into()),
        SheetState::InLot | SheetState::Signed => (
            true,
            "in a lot not sent yet: fsed sends that lot".into(),
        ),
        SheetState::Sent => (
            true,
            format!("sent {times} time(s), ARL awaited: fsed sends the same lot again by itself (same lot id, the insurer drops a duplicate); make no new sheet for this care"),
        ),
        SheetState::Rejected => (
            true,
            "negative ARL: the insurer did not take it; correct it and resubmit (fse.resubmit), fsed sends it in a new lot".into(),
        ),
        SheetState::Acknowledged | SheetState::Paid | SheetState::Refused => (
            false,
            "acknowledged by the insurer: sending it again would be a duplicate".into(),
        ),
        SheetState::Cancelled => (
            false,
            "cancelled before any lot: it is never sent".into(),
        ),
    }
}
