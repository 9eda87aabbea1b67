//! `cards.*` and `vitale.read`: the cards in the readers, the CPS's PIN (verified, changed,
//! unblocked; never kept, never retried) and the Vitale card's contents.

use fse_formats::api::{self, ErrorObject, VerifyPinParams};
use fse_formats::cards::{Pin, Puk};
use fse_formats::channel::CardError;
use serde_json::{json, Value};
use zeroize::Zeroize;

use crate::api::params::{no_params, params, secret_params};
use crate::caller::Caller;
use crate::cards::CardKey;
use crate::context::Context;
use crate::error::ApiError;

use super::to_value;

/// `cards.list`: the cards in this fsed's readers and in the other fseds' (`[remote]`), each
/// with its `location`.
pub(in crate::api) async fn list(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    no_params(p)?;
    let mut out = Vec::new();
    for card in ctx.cards.list().await? {
        let location = crate::remote::Location::local(&card.reader);
        // The certificate itself, so that whoever lists the card (another fsed) checks it
        // against its own trust store.
        let der = card
            .cps
            .as_ref()
            .and_then(|c| c.certificate.as_deref())
            .or_else(|| card.vitale.as_ref().and_then(|v| v.certificate.as_deref()))
            .map(hex::encode);
        let mut v = to_value(card)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("location".into(), to_value(location)?);
            if let Some(der) = der {
                obj.insert("certificate_der".into(), Value::String(der));
            }
        }
        out.push(v);
    }
    out.extend(
        ctx.remote
            .snapshot()
            .iter()
            .map(crate::remote::RemoteCard::shown),
    );
    Ok(Value::Array(out))
}

/// `vitale.read`: the Vitale card's contents and the outcome of its certificate check.
pub(in crate::api) async fn vitale_read(
    ctx: &Context,
    caller: &Caller,
    p: Option<Value>,
) -> Result<Value, ApiError> {
    no_params(p)?;
    let (data, certificate) = ctx
        .cards
        .run_for(caller, CardKey::Vitale(None), |reg| {
            reg.vitale()
                .map(|s| (s.vitale.clone(), s.certificate.clone()))
        })
        .await?
        .map_err(|e| ApiError::card("vitale", e))?;
    let online = match &data {
        Some(d) => super::rights::for_vitale_read(ctx, d).await,
        None => None,
    };
    let mut v = to_value(data)?;
    // The outcome of the certificate check (opposition list) travels with the contents.
    if let (Some(obj), Some(c)) = (v.as_object_mut(), certificate) {
        obj.insert("certificate".into(), to_value(c)?);
    }
    // Rights online, for the beneficiaries whose card rights are closed or old.
    if let (Some(obj), Some(r)) = (v.as_object_mut(), online) {
        obj.insert("rights".into(), r);
    }
    Ok(v)
}

/// A PIN from a parameter, the string wiped.
fn take_pin(mut s: String, field: &str) -> Result<Pin, ApiError> {
    let pin = Pin::new(&s);
    s.zeroize();
    pin.ok_or_else(|| ApiError::invalid(field, format!("{field}: the PIN is 4 digits")))
}

/// `cards.pin_status`: whether the CPS's PIN is verified, its tries left.
pub(in crate::api) async fn pin_status(
    ctx: &Context,
    caller: &Caller,
    p: Option<Value>,
) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[serde(default)]
        cps_serial: Option<String>,
    }
    let P { cps_serial } = params(p)?;
    let key = cps_serial.clone();
    ctx.cards
        .run_for(caller, CardKey::Cps(key.as_deref()), move |reg| {
            let slot = reg.cps(cps_serial.as_deref())?;
            slot.pin_tries_left()
        })
        .await?
        .map(|left| json!({ "verified": left.is_none(), "tries_left": left, "blocked": left == Some(0) }))
        .map_err(|e| ApiError::card("cps", e))
}

/// `cards.change_pin`: the CPS's PIN changed.
pub(in crate::api) async fn change_pin(
    ctx: &Context,
    caller: &Caller,
    p: Option<Value>,
) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        old_pin: String,
        new_pin: String,
        #[serde(default)]
        cps_serial: Option<String>,
    }
    let P {
        old_pin,
        new_pin,
        cps_serial,
    } = secret_params(p)?;
    let (old, new) = (take_pin(old_pin, "old_pin")?, take_pin(new_pin, "new_pin")?);
    let key = cps_serial.clone();
    ctx.cards
        .run_for(caller, CardKey::Cps(key.as_deref()), move |reg| {
            reg.cps(cps_serial.as_deref())?.change_pin(&old, &new)
        })
        .await?
        .map(|()| json!({ "changed": true }))
        .map_err(|e| ApiError::card("cps", e))
}

/// `cards.unblock_pin`: the CPS's PIN unblocked with its unblocking code.
pub(in crate::api) async fn unblock_pin(
    ctx: &Context,
    caller: &Caller,
    p: Option<Value>,
) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        puk: String,
        new_pin: String,
        #[serde(default)]
        cps_serial: Option<String>,
    }
    let P {
        mut puk,
        new_pin,
        cps_serial,
    } = secret_params(p)?;
    let checked = Puk::new(&puk);
    puk.zeroize();
    let puk =
        checked.ok_or_else(|| ApiError::invalid("puk", "puk: the unblocking code is 8 digits"))?;
    let new = take_pin(new_pin, "new_pin")?;
    let key = cps_serial.clone();
    ctx.cards
        .run_for(caller, CardKey::Cps(key.as_deref()), move |reg| {
            reg.cps(cps_serial.as_deref())?.unblock_pin(&puk, &new)
        })
        .await?
        .map(|()| json!({ "unblocked": true }))
        .map_err(|e| match e {
            CardError::WrongPin { tries_left } => ApiError(
                ErrorObject::new(
                    api::WRONG_PIN,
                    format!("wrong unblocking code, {tries_left} tries left"),
                    Some("puk"),
                )
                .with("tries_left", json!(tries_left)),
            ),
            CardError::PinBlocked => ApiError::new(
                api::PIN_BLOCKED,
                "the unblocking code is blocked: the card must be replaced",
                Some("puk"),
            ),
            other => ApiError::card("cps", other),
        })
}

/// `cards.verify_pin`: the CPS's PIN presented once.
pub(in crate::api) async fn verify_pin(
    ctx: &Context,
    caller: &Caller,
    p: Option<Value>,
) -> Result<Value, ApiError> {
    let VerifyPinParams { pin, cps_serial } = secret_params(p)?;
    let pin = take_pin(pin, "pin")?;
    let key = cps_serial.clone();
    ctx.cards
        .run_for(caller, CardKey::Cps(key.as_deref()), move |reg| {
            let slot = reg.cps(cps_serial.as_deref())?;
            // One VERIFY per call: a wrong PIN is reported with its tries left, never retried.
            slot.verify_pin(&pin)?;
            Ok::<_, CardError>(slot.cps.as_ref().map(|c| c.holder.serial.clone()))
        })
        .await?
        .map(|serial| {
            // Lots waiting for this card's signature may go now.
            ctx.batcher_wake.notify_one();
            json!({ "verified": true, "cps_serial": serial })
        })
        .map_err(|e| ApiError::card("cps", e))
}

/// `cards.lock`: the card held by this client alone for a lease (renewed when asked again);
/// a CPS's signing session ends at once.
pub(in crate::api) async fn lock(
    ctx: &Context,
    caller: &Caller,
    p: Option<Value>,
) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        card: String,
        #[serde(default)]
        serial: Option<String>,
        #[serde(default)]
        lease_secs: Option<u64>,
    }
    let P {
        card,
        serial,
        lease_secs,
    } = params(p)?;
    let key = match card.as_str() {
        "cps" => CardKey::Cps(serial.as_deref()),
        "vitale" => CardKey::Vitale(serial.as_deref()),
        _ => return Err(ApiError::invalid("card", "card: \"cps\" or \"vitale\"")),
    };
    let max = ctx.cards.limits().max_lease();
    let lease = match lease_secs {
        Some(0) => return Err(ApiError::invalid("lease_secs", "lease_secs: at least 1")),
        Some(s) => std::time::Duration::from_secs(s).min(max),
        None => max,
    };
    let Some((lease, serial)) = ctx.cards.lock(caller, key, lease).await? else {
        return Err(ApiError::card(key.kind(), CardError::WrongCard));
    };
    let left = lease
        .expires
        .saturating_duration_since(tokio::time::Instant::now());
    Ok(json!({
        "lock": lease.id.to_string(),
        "card": key.kind(),
        "serial": serial,
        "expires_at": lease.expires_at,
        // Whole seconds granted (the request capped by `[cards] max_lease_secs`).
        "lease_secs": left.as_secs_f64().round() as u64,
    }))
}

/// `cards.unlock`: this client's lease ended; a CPS's signing session ends with it.
pub(in crate::api) async fn unlock(
    ctx: &Context,
    caller: &Caller,
    p: Option<Value>,
) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        lock: String,
    }
    let P { lock } = params(p)?;
    let id: u64 = lock
        .parse()
        .map_err(|_| ApiError::invalid("lock", "lock: the id cards.lock answered"))?;
    match ctx.cards.unlock(caller, id).await? {
        Some((card, serial)) => Ok(json!({ "unlocked": true, "card": card, "serial": serial })),
        None => Err(ApiError::new(
            api::NOT_FOUND,
            format!("lock {lock}: not held by this client (ended, expired or unknown)"),
            Some("lock"),
        )),
    }
}
