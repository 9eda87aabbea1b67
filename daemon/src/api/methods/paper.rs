//! `fse.duplicate`: the paper duplicate of a stored sheet written as a PDF (`crate::paper`).

use fse_formats::api;
use serde_json::Value;

use crate::api::params::params;
use crate::context::Context;
use crate::error::ApiError;
use crate::paper::{PaperError, Trigger};

use super::to_value;

/// The reason printed when the request gives none.
const ASKED: &str = "duplicata demandé";

/// `fse.duplicate`: writes the duplicate of sheet `id` (replacing an earlier one) and answers
/// where it is, its size and its SHA-256.
pub(in crate::api) async fn duplicate(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        id: i64,
        #[serde(default)]
        reason: Option<String>,
    }
    let P { id, reason } = params(p)?;
    let reason = match reason {
        None => ASKED.to_string(),
        Some(r)
            if r.trim().is_empty()
                || r.chars().count() > 500
                || r.chars().any(char::is_control) =>
        {
            return Err(ApiError::invalid(
                "reason",
                "reason: 1 to 500 characters, not only spaces, no control characters",
            ))
        }
        Some(r) => r.trim().to_string(),
    };
    let written = ctx
        .paper
        .duplicate(&ctx.store, &ctx.events, id, &reason, Trigger::Asked, false)
        .await
        .map_err(|e| match e {
            PaperError::NotFound(_) => {
                ApiError::new(api::NOT_FOUND, format!("no sheet {id}"), Some("id"))
            }
            PaperError::Store(e) => e.into(),
            PaperError::Sheet { .. } => ApiError::new(api::INTERNAL_ERROR, e.to_string(), None),
            PaperError::Write { .. } => {
                ApiError::new(api::STORAGE_ERROR, format!("paper duplicate: {e}"), None)
            }
        })?;
    // Written unconditionally: there is always an answer (`only_if_missing` is false).
    match written {
        Some(w) => to_value(w),
        None => Err(ApiError::new(
            api::INTERNAL_ERROR,
            "duplicate not written",
            None,
        )),
    }
}
