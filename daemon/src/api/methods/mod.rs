//! Each method's handler, its parameters beside it, by group: `system`, `cards` (and
//! `vitale.read`), `fse` (and `paper`: `fse.duplicate`; `status`: `fse.status`), `lots` (and `transmit.now`), `returns`, `payments` (`payments.list`), `queue`, `events`, `store`, `workstations` (enrollment, local socket only).
//! `dispatch` calls them by name.

pub(super) mod attach;
pub(super) mod card_ops;
pub(super) mod cards;
pub(super) mod events;
pub(super) mod fse;
pub(super) mod lots;
pub(super) mod paper;
pub(super) mod payments;
pub(super) mod presence;
pub(super) mod queue;
pub(super) mod returns;
pub(super) mod rights;
pub(super) mod status;
pub(super) mod store;
pub(super) mod system;
pub(super) mod workstations;

use fse_formats::api;
use serde_json::{json, Value};

use crate::error::ApiError;

/// `v` as a JSON value.
pub(super) fn to_value<T: serde::Serialize>(v: T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::new(api::INTERNAL_ERROR, e.to_string(), None))
}

/// A damaged row in a listing, in its place: its id (a number for a sheet, as the sound
/// entries have) and why it is not served.
pub(super) fn damaged_entry(d: &fse_queue::DamagedRow) -> Value {
    let id = match d.id.parse::<i64>() {
        Ok(n) if d.kind == "sheet" => json!(n),
        _ => json!(d.id),
    };
    json!({ "id": id, "damaged": d.reason })
}
