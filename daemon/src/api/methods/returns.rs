//! `returns.list`: the ARLs and payment returns recorded.

use fse_queue::LotId;
use serde_json::{json, Value};

use crate::api::params::params;
use crate::context::Context;
use crate::error::ApiError;

/// `returns.list`: the ARLs and payment returns recorded, newest first (`limit`, default 100,
/// at most 1000, of each), only those of one lot when `lot_id` is given.
pub(in crate::api) async fn list(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[serde(default)]
        lot_id: Option<String>,
        #[serde(default)]
        limit: Option<usize>,
    }
    let P { lot_id, limit } = params(p)?;
    let lot_id = lot_id.map(LotId::from);
    let limit = limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::invalid("limit", "limit: 1 to 1000"));
    }
    let (arls, payments) = ctx
        .store
        .call(move |q| {
            Ok((
                q.acks(lot_id.as_ref(), limit)?,
                q.payments(lot_id.as_ref(), limit)?,
            ))
        })
        .await?;
    Ok(json!({
        "arls": arls.iter().map(|a| json!({
            "lot_id": a.lot_id, "status": a.status, "received_at": a.received_at,
            "rejections": a.rejections, "recorded_at": a.recorded_at,
        })).collect::<Vec<_>>(),
        "payments": payments,
    }))
}
