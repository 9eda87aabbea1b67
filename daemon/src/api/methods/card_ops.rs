//! `cards.authenticate` and `cards.sign`: card operations another fsed asks of the cards in
//! this fsed's readers (a proof of presence by the Vitale card at reception, a lot header signed
//! by the CPS at the doctor's desk). `cards.sign` is idempotent by `request_id`
//! (`remote::SignCache`): a repeat never reaches the card.

use fse_formats::api;
use fse_formats::channel::CardError;
use serde_json::{json, Value};

use crate::api::params::params;
use crate::caller::Caller;
use crate::cards::CardKey;
use crate::context::Context;
use crate::error::ApiError;
use crate::remote::served::Lookup;

/// The longest message `cards.sign` signs (a lot header's DER is far shorter).
pub const MAX_SIGNED: usize = 4096;

/// A fixed-length hex parameter, decoded.
fn hex_param<const N: usize>(field: &str, s: &str) -> Result<[u8; N], ApiError> {
    let bytes =
        hex::decode(s).map_err(|e| ApiError::invalid(field, format!("{field}: not hex ({e})")))?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| {
        ApiError::invalid(
            field,
            format!(
                "{field}: {N} bytes expected ({} hex digits), got {}",
                2 * N,
                bytes.len()
            ),
        )
    })
}

/// `cards.authenticate`: the Vitale card with this serial (or the first present) signs a
/// 32-byte challenge, the proof of the patient's presence.
pub(in crate::api) async fn authenticate(
    ctx: &Context,
    caller: &Caller,
    p: Option<Value>,
) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[serde(default)]
        serial: Option<String>,
        challenge: String,
    }
    let P { serial, challenge } = params(p)?;
    let challenge: [u8; 32] = hex_param("challenge", &challenge)?;
    let key = CardKey::Vitale(serial.as_deref());
    let (serial, signature) = ctx
        .cards
        .run_for(caller, key, {
            let serial = serial.clone();
            move |reg| {
                let slot = reg
                    .slots
                    .iter_mut()
                    .find(|s| {
                        !s.removed
                            && s.vitale
                                .as_ref()
                                .is_some_and(|v| serial.as_deref().is_none_or(|w| v.serial == w))
                    })
                    .ok_or(CardError::WrongCard)?;
                let serial = slot
                    .vitale
                    .as_ref()
                    .map(|v| v.serial.clone())
                    .unwrap_or_default();
                slot.authenticate(&challenge).map(|sig| (serial, sig))
            }
        })
        .await?
        .map_err(|e| ApiError::card("vitale", e))?;
    Ok(json!({ "serial": serial, "signature": hex::encode(signature) }))
}

/// `cards.sign`: the CPS with this serial signs `message` (a lot header's DER), with the
/// batcher's checks (PIN verified in this card session, certificate, validity, a situation
/// that may sign lots). A repeat of `request_id` with the same card and message is answered
/// the signature made first, without the card; with another card or message it is refused.
pub(in crate::api) async fn sign(
    ctx: &Context,
    caller: &Caller,
    p: Option<Value>,
) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        cps_serial: String,
        message: String,
        request_id: String,
    }
    let P {
        cps_serial,
        message,
        request_id,
    } = params(p)?;
    if request_id.is_empty() || request_id.chars().count() > 128 {
        return Err(ApiError::invalid(
            "request_id",
            "request_id: 1 to 128 characters",
        ));
    }
    if message.len() > 2 * MAX_SIGNED {
        return Err(ApiError::invalid(
            "message",
            format!("message: at most {MAX_SIGNED} bytes"),
        ));
    }
    let message = hex::decode(&message)
        .map_err(|e| ApiError::invalid("message", format!("message: not hex ({e})")))?;
    // Held across the card operation: two copies of one request make one signature.
    let mut cache = ctx.sign_cache.lock().await;
    let now = std::time::Instant::now();
    match cache.lookup(&request_id, &cps_serial, &message, now) {
        Lookup::Answered(signature) => {
            tracing::info!(request_id = %request_id, "cards.sign repeated: the kept signature answered");
            return Ok(
                json!({ "cps_serial": cps_serial, "signature": hex::encode(signature), "repeated": true }),
            );
        }
        Lookup::Reused => {
            return Err(ApiError::new(
                api::IDEMPOTENCY_KEY_REUSED,
                "request_id: already used for another card or message",
                Some("request_id"),
            ))
        }
        Lookup::New => {}
    }
    let today = chrono::Utc::now().date_naive();
    let (serial, msg) = (cps_serial.clone(), message.clone());
    let signature = ctx
        .cards
        .run_for(caller, CardKey::Cps(Some(&cps_serial)), move |reg| {
            let slot = reg
                .cps(Some(&serial))
                .map_err(|e| ApiError::card("cps", e))?;
            if !slot.pin_verified {
                return Err(ApiError::card("cps", CardError::PinRequired));
            }
            let cps = slot
                .cps
                .as_ref()
                .ok_or_else(|| ApiError::card("cps", CardError::WrongCard))?;
            if let Some((why, field)) =
                crate::cards::refusal_to_sign_lots(cps, slot.certificate.as_ref(), today)
            {
                return Err(ApiError::new(api::CARD_NOT_ALLOWED, why, Some(field)));
            }
            let signature = slot.sign(&msg).map_err(|e| ApiError::card("cps", e))?;
            // A lot signed for another fsed counts in this card's signing session as its own.
            slot.lot_signed();
            Ok(signature)
        })
        .await??;
    cache.keep(&request_id, &cps_serial, &message, signature, now);
    drop(cache);
    Ok(json!({ "cps_serial": cps_serial, "signature": hex::encode(signature), "repeated": false }))
}
