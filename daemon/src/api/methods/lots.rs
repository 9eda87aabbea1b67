//! `lots.*` and `transmit.now`: the lots listed and read, and the batcher asked to close
//! lots or to send now.

use std::sync::atomic::Ordering;

use fse_formats::api::{self, LotsCloseParams};
use fse_queue::LotId;
use serde_json::{json, Value};

use crate::api::jsonrpc::shown;
use crate::api::params::{no_params, params};
use crate::context::Context;
use crate::error::ApiError;

use super::{damaged_entry, to_value};

/// `lots.list`: the lots (a damaged row named in its place).
pub(in crate::api) async fn list(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    no_params(p)?;
    let rows = ctx.store.call(|q| q.list_lots_checked(1000)).await?;
    to_value(
        rows.iter()
            .map(|l| match l {
                Ok(l) => json!({ "id": l.id, "number": l.number, "practitioner_id": l.practitioner_id, "destination": l.destination, "state": l.state.as_str(), "sheet_count": l.sheet_count, "closed_at": l.closed_at }),
                Err(d) => damaged_entry(d),
            })
            .collect::<Vec<_>>(),
    )
}

/// `lots.get`: a lot, its sheets, its DRE lots, its signed DER and CMS.
pub(in crate::api) async fn get(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        lot_id: String,
    }
    let P { lot_id } = params(p)?;
    let id = LotId::new(lot_id.as_str());
    let (lot, cms, sheet_ids, dre_lots) = ctx
        .store
        .read(move |q| {
            Ok((
                q.get_lot(&id)?,
                q.lot_cms(&id)?,
                q.lot_sheet_ids(&id)?,
                q.lot_dre_lots(&id)?,
            ))
        })
        .await?;
    let l = lot.ok_or_else(|| {
        ApiError::new(
            api::NOT_FOUND,
            format!("no lot {:?}", shown(&lot_id)),
            Some("lot_id"),
        )
    })?;
    Ok(json!({
        "id": l.id, "number": l.number, "practitioner_id": l.practitioner_id,
        "destination": l.destination, "state": l.state.as_str(),
        "sheet_count": l.sheet_count, "closed_at": l.closed_at,
        "sheet_ids": sheet_ids,
        "dre_lots": dre_lots.iter().map(|(amc, dres, state)| json!({"amc": amc, "dres": dres, "state": state})).collect::<Vec<_>>(),
        "signed_lot": l.signed_der.as_deref().map(hex::encode),
        "cms": cms.as_deref().map(fse_formats::cms::to_pem),
    }))
}

/// `lots.close`: the open lots closed now.
pub(in crate::api) async fn close(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    let _: LotsCloseParams = params(p)?;
    ctx.close_now.store(true, Ordering::SeqCst);
    ctx.batcher_wake.notify_one();
    Ok(json!({ "requested": true }))
}

/// `transmit.now`: the lots waiting sent now, even during a failed send's backoff.
pub(in crate::api) async fn transmit_now(
    ctx: &Context,
    p: Option<Value>,
) -> Result<Value, ApiError> {
    no_params(p)?;
    ctx.send_now.store(true, Ordering::SeqCst);
    ctx.batcher_wake.notify_one();
    Ok(json!({ "requested": true }))
}
