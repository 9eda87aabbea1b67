//! `fse.*`: care sheets made (`fse.create`, the hot path), read, listed, cancelled, sent
//! again, and proved part of their signed lot.

use fse_formats::api::{self, FseCreateParams, FseGetParams};
use fse_queue::{SheetId, SheetState};
use serde_json::{json, Value};

use crate::api::jsonrpc::shown;
use crate::api::params::params;
use crate::billing;
use crate::caller::Caller;
use crate::context::Context;
use crate::error::ApiError;
use crate::json::JsonText;

use super::{damaged_entry, to_value};

/// `fse.create`: a sheet made from the cards and the request, committed, then answered around
/// its stored JSON text (the hot path: no `Value` in between).
pub(in crate::api) async fn create(
    ctx: &Context,
    caller: &Caller,
    p: Option<Value>,
) -> Result<JsonText, ApiError> {
    let params: FseCreateParams = params(p)?;
    let degraded = params.degraded.is_some();
    let created = billing::create(
        &ctx.cards,
        &ctx.remote,
        &ctx.store,
        &ctx.rights,
        caller,
        &ctx.presence,
        params,
    )
    .await?;
    ctx.events.publish(
        "sheet.accepted",
        json!({ "id": created.id, "number": created.number }),
    );
    ctx.batcher_wake.notify_one();
    if degraded && ctx.paper.auto() {
        // After the commit, beside the answer: the sheet stands whatever becomes of its paper.
        let (paper, store, events, id) = (
            std::sync::Arc::clone(&ctx.paper),
            ctx.store.clone(),
            ctx.events.clone(),
            created.id,
        );
        tokio::spawn(async move {
            let reason = crate::paper::DEGRADED_REASON;
            paper
                .automatic(&store, &events, id, reason, crate::paper::Trigger::Degraded)
                .await;
        });
    }
    Ok(created.into_json())
}

/// `fse.get`: a stored sheet, its lot and its reason.
pub(in crate::api) async fn get(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    let FseGetParams { id } = params(p)?;
    let row = stored_sheet(ctx, id).await?;
    let mut v = to_value(billing::created(&row)?)?;
    v["lot_id"] = json!(row.lot_id);
    v["reason"] = json!(row.reason);
    let attachments = ctx
        .store
        .read(move |q| q.sheet_attachments(SheetId(id)))
        .await?;
    v["attachments"] = attachments
        .iter()
        .map(super::attach::shown_attachment)
        .collect();
    Ok(v)
}

/// `fse.list`: the sheets, by id, in pages (a damaged row named in its place).
pub(in crate::api) async fn list(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[serde(default)]
        state: Option<String>,
        #[serde(default = "default_limit")]
        limit: usize,
        #[serde(default)]
        after_id: i64,
    }
    fn default_limit() -> usize {
        100
    }
    let P {
        state,
        limit,
        after_id,
    } = params(p)?;
    let state =
        match state {
            Some(s) => Some(s.parse::<SheetState>().map_err(|_| {
                ApiError::invalid("state", format!("unknown state {:?}", shown(&s)))
            })?),
            None => None,
        };
    let (rows, counts) = ctx
        .store
        .call(move |q| {
            let rows = q.list_sheets_checked(state, limit.min(1000), SheetId(after_id))?;
            let ids = rows
                .iter()
                .filter_map(|r| r.as_ref().ok().map(|r| r.id.get()));
            let counts = match (ids.clone().min(), ids.max()) {
                (Some(first), Some(last)) => q.attachment_counts(SheetId(first), SheetId(last))?,
                _ => Default::default(),
            };
            Ok((rows, counts))
        })
        .await?;
    // A damaged row keeps its place, named by its id, and the page goes on.
    to_value(
        rows.iter()
            .map(|r| match r {
                Ok(r) => json!({ "id": r.id, "number": r.number, "state": r.state.as_str(), "lot_id": r.lot_id, "destination": r.destination, "reason": r.reason, "attachments": counts.get(&r.id.get()).copied().unwrap_or(0) }),
                Err(d) => damaged_entry(d),
            })
            .collect::<Vec<_>>(),
    )
}

/// `fse.cancel`: a sheet not yet in a lot cancelled.
pub(in crate::api) async fn cancel(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        id: i64,
        reason: String,
    }
    let P { id, reason } = params(p)?;
    if reason.trim().is_empty() || reason.len() > 500 {
        return Err(ApiError::invalid(
            "reason",
            "reason: 1 to 500 characters, not only spaces",
        ));
    }
    // What the sheet withheld stops counting: the histories in memory go, before (no
    // read from the file started now is kept) and after the change.
    ctx.store.forget_histories();
    let result = ctx
        .store
        .call(move |q| Ok(q.cancel_sheet(SheetId(id), reason.trim())))
        .await?;
    ctx.store.forget_histories();
    let row = transition(
        id,
        result,
        "NOT_CANCELLABLE",
        "only a sheet not yet in a lot can be cancelled",
    )?;
    ctx.events.publish(
        "sheet.cancelled",
        json!({ "sheet_id": id, "reason": row.reason }),
    );
    let mut v = to_value(billing::created(&row)?)?;
    v["reason"] = json!(row.reason);
    Ok(v)
}

/// `fse.resubmit`: a rejected sheet sent again before its deadline.
pub(in crate::api) async fn resubmit(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    let FseGetParams { id } = params(p)?;
    let row = stored_sheet(ctx, id).await?;
    let sheet = billing::stored_sheet(&row)?;
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    if sheet.deadline < today {
        return Err(ApiError::rule_named(
            "PAST_DEADLINE",
            "id",
            format!(
                "the sending deadline was {}: make a new sheet",
                sheet.deadline
            ),
        ));
    }
    let result = ctx
        .store
        .call(move |q| Ok(q.resubmit_sheet(SheetId(id))))
        .await?;
    let row = transition(
        id,
        result,
        "NOT_REJECTED",
        "only a rejected sheet is sent again",
    )?;
    ctx.events
        .publish("sheet.resubmitted", json!({ "sheet_id": id }));
    ctx.batcher_wake.notify_one();
    to_value(billing::created(&row)?)
}

/// `fse.proof`: the proof that a sheet is in its signed lot.
pub(in crate::api) async fn proof(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    let FseGetParams { id } = params(p)?;
    let row = stored_sheet(ctx, id).await?;
    let not_signed = || {
        ApiError::new(
            api::NOT_FOUND,
            format!("sheet {id} is not in a signed lot yet"),
            Some("id"),
        )
    };
    let lot_id = row.lot_id.clone().ok_or_else(not_signed)?;
    let lot = ctx
        .store
        .call(move |q| q.get_lot(&lot_id))
        .await?
        .ok_or_else(not_signed)?;
    let der = lot.signed_der.ok_or_else(not_signed)?;
    let signed = fse_formats::lot::SignedLot::from_der(&der)
        .map_err(|e| ApiError::new(api::INTERNAL_ERROR, format!("stored lot: {e}"), None))?;
    let index = signed
        .entries
        .iter()
        .position(|e| e.sheet == row.der)
        .ok_or_else(|| ApiError::new(api::INTERNAL_ERROR, "sheet missing from its lot", None))?;
    let proof = signed
        .proof(index, signed.signer_certificate.as_deref())
        .map_err(|e| ApiError::new(api::INTERNAL_ERROR, e.to_string(), None))?;
    to_value(proof)
}

/// The stored sheet `id`, or `NOT_FOUND`.
async fn stored_sheet(ctx: &Context, id: i64) -> Result<fse_queue::SheetRow, ApiError> {
    ctx.store
        .call(move |q| q.get_sheet(SheetId(id)))
        .await?
        .ok_or_else(|| ApiError::new(api::NOT_FOUND, format!("no sheet {id}"), Some("id")))
}

/// The API outcome of a state change the practice asked of sheet `id`: a sheet in another
/// state is a rule violation named `rule`, explained by `only`.
fn transition(
    id: i64,
    result: Result<fse_queue::SheetRow, fse_queue::QueueError>,
    rule: &str,
    only: &str,
) -> Result<fse_queue::SheetRow, ApiError> {
    match result {
        Ok(row) => Ok(row),
        Err(fse_queue::QueueError::NotFound(_)) => Err(ApiError::new(
            api::NOT_FOUND,
            format!("no sheet {id}"),
            Some("id"),
        )),
        Err(fse_queue::QueueError::InvalidTransition { from, .. }) => Err(ApiError::rule_named(
            rule,
            "id",
            format!("sheet {id} is {from}: {only}"),
        )),
        Err(e) => Err(ApiError::new(
            api::STORAGE_ERROR,
            format!("store: {e}"),
            None,
        )),
    }
}
