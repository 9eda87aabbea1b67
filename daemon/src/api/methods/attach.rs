//! `fse.attach`: a supporting document (SCOR) for a sheet, its type found from its bytes,
//! checked (size, type, resolution), stored durably before the answer, and from then on
//! referenced by the next lot signed for the sheet's practitioner and destination.

use base64::Engine;
use fse_formats::api;
use fse_formats::attachment::{self, AttachmentKind, Refusal};
use fse_queue::{AttachmentRow, NewAttachment, SheetId, SheetState};
use serde_json::{json, Value};

use crate::api::jsonrpc::shown;
use crate::api::params::params;
use crate::context::Context;
use crate::error::ApiError;

/// An `ATTACHMENT_REFUSED` error naming the field and the reason.
fn refused(field: &str, reason: &str, message: impl Into<String>) -> ApiError {
    ApiError(
        api::ErrorObject::new(api::ATTACHMENT_REFUSED, message, Some(field))
            .with("reason", json!(reason)),
    )
}

/// A stored document as the API shows it.
pub(crate) fn shown_attachment(a: &AttachmentRow) -> Value {
    json!({
        "id": a.id,
        "kind": a.kind,
        "media_type": a.media_type,
        "size": a.size,
        "sha256": hex::encode(a.sha256),
        "state": a.state,
        "signed_lot_id": a.signed_lot_id,
        "attachment_lot_id": a.attachment_lot_id,
        "reason": a.reason,
    })
}

/// `fse.attach`: `{id, kind, content (base64), name?}` → the stored document.
pub(in crate::api) async fn attach(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        id: i64,
        kind: String,
        content: String,
        /// Informational only: the type comes from the bytes.
        #[serde(default)]
        #[allow(dead_code)]
        name: Option<String>,
    }
    let P {
        id, kind, content, ..
    } = params(p)?;
    let kind = AttachmentKind::parse(&kind).ok_or_else(|| {
        refused(
            "kind",
            "kind",
            format!(
                "unknown kind {:?}: prescription, degraded_paper or other",
                shown(&kind)
            ),
        )
    })?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(content.as_bytes())
        .map_err(|e| {
            refused(
                "content",
                "malformed",
                format!("content is not base64: {e}"),
            )
        })?;
    let max = ctx.doctor.attachments.max_bytes;
    let inspected = attachment::inspect(&bytes, max).map_err(|Refusal { reason, detail }| {
        refused(
            "content",
            reason.as_str(),
            format!("document refused: {detail}"),
        )
    })?;
    let sheet = ctx
        .store
        .call(move |q| q.get_sheet(SheetId(id)))
        .await?
        .ok_or_else(|| ApiError::new(api::NOT_FOUND, format!("no sheet {id}"), Some("id")))?;
    if matches!(sheet.state, SheetState::Cancelled | SheetState::Refused) {
        return Err(refused(
            "id",
            "state",
            format!(
                "sheet {id} is {}: no document is attached to it",
                sheet.state.as_str()
            ),
        ));
    }
    let new = NewAttachment {
        sheet_id: SheetId(id),
        kind: kind.as_str().into(),
        media_type: inspected.media_type.as_str().into(),
        sha256: inspected.sha256,
        content: bytes,
    };
    let (row, fresh) = ctx.store.call(move |q| q.insert_attachment(&new)).await?;
    if fresh {
        ctx.events.publish(
            "sheet.attached",
            json!({ "sheet_id": id, "attachment": row.id, "kind": row.kind }),
        );
        ctx.batcher_wake.notify_one();
    }
    let mut v = shown_attachment(&row);
    v["sheet_id"] = json!(id);
    v["dpi"] = json!(inspected.dpi.map(|(x, y)| [x, y]));
    v["new"] = json!(fresh);
    Ok(v)
}
