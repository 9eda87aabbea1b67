//! The API's error type: a stable code, the field at fault, a readable
//! message; built from card, rule and store failures.

use fse_formats::api::{self, ErrorObject};
use fse_formats::build::{self, Refusal, RefusalKind};
use fse_formats::channel::{CardError, ChannelError};
use serde_json::json;

use crate::cards::CardsError;
use crate::store::StoreError;

/// An error returned to an API client.
#[derive(Debug, Clone)]
pub struct ApiError(pub ErrorObject);

impl ApiError {
    /// An error with a code, message and optional field.
    pub fn new(code: i64, message: impl Into<String>, field: Option<&str>) -> Self {
        ApiError(ErrorObject::new(code, message, field))
    }

    /// Invalid parameters, naming the field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(api::INVALID_PARAMS, message, Some(field))
    }

    /// A business rule refused a field.
    pub fn rule(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(api::RULE_VIOLATION, message, Some(field))
    }

    /// A business rule, named by its stable code (`data.rule`), refused a field.
    pub fn rule_named(rule: &str, field: &str, message: impl Into<String>) -> Self {
        ApiError(
            ErrorObject::new(api::RULE_VIOLATION, message, Some(field)).with("rule", json!(rule)),
        )
    }

    /// A card error met while working on `what` (the card: `cps`, `vitale`).
    pub fn card(what: &str, e: CardError) -> Self {
        match e {
            CardError::WrongPin { tries_left } => ApiError(
                ErrorObject::new(
                    api::WRONG_PIN,
                    format!("wrong PIN, {tries_left} tries left"),
                    Some("pin"),
                )
                .with("tries_left", json!(tries_left)),
            ),
            CardError::PinBlocked => ApiError::new(
                api::PIN_BLOCKED,
                "PIN blocked: unblock it with the code of the PIN letter",
                Some("pin"),
            ),
            CardError::PinRequired => ApiError::new(
                api::PIN_REQUIRED,
                "the CPS PIN must be verified first (cards.verify_pin)",
                Some("pin"),
            ),
            CardError::WrongCard => ApiError::new(
                api::CARD_ABSENT,
                format!("no {what} card present"),
                Some(what),
            ),
            // Pulled out mid-operation: the card is absent, and nothing (a PIN try above all)
            // is counted or retried.
            CardError::Channel(ChannelError::CardRemoved) => ApiError::new(
                api::CARD_ABSENT,
                format!(
                    "the {what} card was removed during the operation: nothing was counted \
                     against it; insert it again"
                ),
                Some(what),
            ),
            other => ApiError::new(api::CARD_ERROR, format!("{what} card: {other}"), Some(what)),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let code = match (r.kind, r.rule) {
            (_, build::VITALE_ABSENT) => api::CARD_ABSENT,
            (RefusalKind::Invalid, _) => api::INVALID_PARAMS,
            (RefusalKind::Card, _) => api::CARD_NOT_ALLOWED,
            (RefusalKind::Rule, _) => api::RULE_VIOLATION,
        };
        ApiError(ErrorObject::new(code, r.message, Some(&r.field)).with("rule", json!(r.rule)))
    }
}

impl From<CardsError> for ApiError {
    fn from(e: CardsError) -> Self {
        match e {
            CardsError::Busy(busy) => ApiError::busy(&busy),
            e => ApiError::new(api::INTERNAL_ERROR, e.to_string(), None),
        }
    }
}

impl ApiError {
    /// `CARD_BUSY`: the card is taken by other clients (or a lease) for longer than the wait
    /// bound; `retry_after_ms` says when it would likely be served.
    pub fn busy(busy: &crate::cards::Busy) -> Self {
        let message = match busy.reason {
            "lock" => format!(
                "the {} {} is locked by another client: retry after {} ms",
                busy.card, busy.serial, busy.retry_after_ms
            ),
            _ => format!(
                "the {} {} is busy with other clients' work: retry after {} ms",
                busy.card, busy.serial, busy.retry_after_ms
            ),
        };
        ApiError(
            ErrorObject::new(api::CARD_BUSY, message, Some("card"))
                .with("card", serde_json::json!(busy.card))
                .with("serial", serde_json::json!(busy.serial))
                .with("retry_after_ms", serde_json::json!(busy.retry_after_ms))
                .with("reason", serde_json::json!(busy.reason)),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // A value the file holds that fsed cannot read (a sheet's DER that no longer
            // decodes): the database works, the data does not.
            StoreError::Queue(fse_queue::QueueError::Sqlite(
                rusqlite::Error::FromSqlConversionFailure(_, _, why),
            )) => ApiError::new(api::INTERNAL_ERROR, why.to_string(), None),
            // A key the practitioner already used for another request: the client's error.
            StoreError::Queue(e @ fse_queue::QueueError::IdempotencyKeyReused { sheet_id, .. }) => {
                ApiError(
                    ErrorObject::new(
                        api::IDEMPOTENCY_KEY_REUSED,
                        e.to_string(),
                        Some("idempotency_key"),
                    )
                    .with("sheet_id", json!(sheet_id)),
                )
            }
            // A damaged row: named, never served.
            StoreError::Queue(fse_queue::QueueError::Damaged(d)) => {
                let field = if d.kind == "sheet" { "id" } else { "lot_id" };
                let damaged = json!({ "kind": d.kind, "id": d.id, "reason": d.reason });
                let message = fse_queue::QueueError::Damaged(d).to_string();
                ApiError(
                    ErrorObject::new(api::STORED_ROW_DAMAGED, message, Some(field))
                        .with("damaged", damaged),
                )
            }
            e => ApiError::new(api::STORAGE_ERROR, format!("store: {e}"), None),
        }
    }
}
