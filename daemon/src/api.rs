//! The local API: JSON-RPC 2.0, one JSON object per line, on a Unix socket.
//! Each connection is served by its own task; a bad line gets an error reply
//! naming the problem and the connection stays open. Methods are documented
//! in `daemon/API.md`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fse_formats::api::{
    self, ErrorObject, FseCreateParams, FseGetParams, LotsCloseParams, Request, Response,
    VerifyPinParams,
};
use fse_formats::cards::{Pin, Puk};
use fse_formats::channel::CardError;
use fse_queue::SheetState;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, Notify, Semaphore};
use zeroize::Zeroize;

use crate::billing;
use crate::cards::Cards;
use crate::error::ApiError;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// Longest request line accepted, in bytes.
pub const MAX_LINE: usize = 64 * 1024;
/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 256;

/// What the API handlers share.
#[derive(Clone)]
pub struct Context {
    /// Cards.
    pub cards: Cards,
    /// Queue.
    pub store: Store,
    /// Wakes the batcher.
    pub batcher_wake: Arc<Notify>,
    /// Asks the batcher to close open lots now.
    pub close_now: Arc<AtomicBool>,
    /// Events for `events.subscribe`.
    pub events: crate::events::Bus,
    /// Settings a reload may change (`lots.deadline_alarm_days` here).
    pub live: crate::config::Live,
    /// What `system.doctor` checks.
    pub doctor: Arc<crate::doctor::Setup>,
}

/// One client connection: where its lines go, and its event subscription.
#[derive(Default)]
pub struct Conn {
    out: Option<mpsc::Sender<Vec<u8>>>,
    subscription: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(task) = self.subscription.take() {
            task.abort();
        }
    }
}

fn encode_line(v: &impl serde::Serialize) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).unwrap_or_else(|_| {
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"unencodable reply"}}"#
            .to_vec()
    });
    out.push(b'\n');
    out
}

/// Serves connections until shutdown, then returns once every connection has finished the
/// request it was serving (no new request is read after shutdown).
pub async fn serve(listener: UnixListener, ctx: Context, mut shutdown: Shutdown) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
                    return;
                };
                let ctx = ctx.clone();
                let sd = shutdown.clone();
                tokio::spawn(async move {
                    serve_connection(stream, ctx, sd).await;
                    drop(permit);
                });
            }
            Err(e) => tracing::warn!(error = %e, "accept failed"),
        }
    }
    drop(listener);
    // Every connection holds a permit until it is done.
    let _ = limit.acquire_many(MAX_CONNECTIONS as u32).await;
}

async fn serve_connection(stream: UnixStream, ctx: Context, mut shutdown: Shutdown) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(256);
    let writer = tokio::spawn(async move {
        while let Some(line) = out_rx.recv().await {
            if write.write_all(&line).await.is_err() {
                return;
            }
        }
    });
    let mut conn = Conn {
        out: Some(out_tx.clone()),
        subscription: None,
    };
    serve_lines(&mut reader, &ctx, &mut conn, &out_tx, &mut shutdown).await;
    drop(conn);
    drop(out_tx);
    let _ = writer.await;
}

async fn serve_lines(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    ctx: &Context,
    conn: &mut Conn,
    out: &mpsc::Sender<Vec<u8>>,
    shutdown: &mut Shutdown,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut *reader).take(MAX_LINE as u64 + 1);
        let n = tokio::select! {
            biased;
            _ = shutdown.wait() => return,
            n = limited.read_until(b'\n', &mut line) => n,
        };
        let reply = match n {
            Ok(0) | Err(_) => return,
            Ok(_) if line.len() > MAX_LINE && line.last() != Some(&b'\n') => {
                // Skip the rest of the oversized line, then answer.
                let mut rest = Vec::new();
                loop {
                    rest.clear();
                    let mut limited = (&mut *reader).take(MAX_LINE as u64);
                    match limited.read_until(b'\n', &mut rest).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if rest.last() == Some(&b'\n') => break,
                        Ok(_) => {}
                    }
                }
                Some(Response::err(
                    Value::Null,
                    ErrorObject::new(
                        api::INVALID_REQUEST,
                        format!("request line longer than {MAX_LINE} bytes"),
                        None,
                    ),
                ))
            }
            Ok(_) => handle_line(ctx, conn, &mut line).await,
        };
        line.zeroize();
        if let Some(reply) = reply {
            if out.send(encode_line(&reply)).await.is_err() {
                return;
            }
        }
    }
}

/// Answers one line; `None` for a notification (no id).
pub async fn handle_line(ctx: &Context, conn: &mut Conn, line: &mut [u8]) -> Option<Response> {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t.trim(),
        Err(_) => {
            return Some(Response::err(
                Value::Null,
                ErrorObject::new(api::PARSE_ERROR, "request is not UTF-8", None),
            ))
        }
    };
    if text.is_empty() {
        return None;
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Some(Response::err(
                Value::Null,
                ErrorObject::new(api::PARSE_ERROR, format!("invalid JSON: {e}"), None),
            ))
        }
    };
    let id = value.get("id").cloned();
    let mut req: Request = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => {
            let err = ErrorObject::new(
                api::INVALID_REQUEST,
                format!("not a JSON-RPC request: {e}"),
                serde_field(&e.to_string()).as_deref(),
            );
            return Some(Response::err(id.unwrap_or(Value::Null), err));
        }
    };
    if req.jsonrpc != "2.0" {
        return Some(Response::err(
            id.unwrap_or(Value::Null),
            ErrorObject::new(
                api::INVALID_REQUEST,
                "jsonrpc must be \"2.0\"",
                Some("jsonrpc"),
            ),
        ));
    }
    // The span follows the request's future across threads (`instrument`); an entered guard
    // held over an `.await` would corrupt the subscriber's span registry.
    let span = tracing::info_span!("request", method = %req.method);
    let result = if req.method == "events.subscribe" {
        span.in_scope(|| subscribe(ctx, conn, req.params.take()))
    } else {
        use tracing::Instrument;
        dispatch(ctx, &req.method, req.params.take())
            .instrument(span)
            .await
    };
    let id = req.id?;
    Some(match result {
        Ok(v) => Response::ok(id, v),
        Err(ApiError(e)) => Response::err(id, e),
    })
}

/// The field named in a serde error message (`missing field `act``).
fn serde_field(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

fn params<T: DeserializeOwned>(p: Option<Value>) -> Result<T, ApiError> {
    serde_json::from_value(p.unwrap_or(Value::Object(Default::default()))).map_err(|e| {
        let msg = e.to_string();
        let field = serde_field(&msg).unwrap_or_else(|| "params".into());
        ApiError::invalid(&field, format!("invalid params: {msg}"))
    })
}

fn to_value<T: serde::Serialize>(v: T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::new(api::INTERNAL_ERROR, e.to_string(), None))
}

/// Overwrites every string of a JSON value (the PIN must not linger in memory).
fn scrub(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(scrub),
        Value::Object(o) => o.values_mut().for_each(scrub),
        _ => {}
    }
}

async fn dispatch(ctx: &Context, method: &str, p: Option<Value>) -> Result<Value, ApiError> {
    match method {
        "system.version" => {
            Ok(json!({ "name": "fsed", "version": env!("CARGO_PKG_VERSION"), "api": 1 }))
        }
        "cards.list" => to_value(ctx.cards.list().await?),
        "cards.verify_pin" => verify_pin(ctx, p).await,
        "cards.pin_status" => pin_status(ctx, p).await,
        "cards.change_pin" => change_pin(ctx, p).await,
        "cards.unblock_pin" => unblock_pin(ctx, p).await,
        "vitale.read" => {
            let (data, certificate) = ctx
                .cards
                .run(|reg| {
                    reg.vitale()
                        .map(|s| (s.vitale.clone(), s.certificate.clone()))
                })
                .await?
                .map_err(|e| ApiError::card("vitale", e))?;
            let mut v = to_value(data)?;
            // The outcome of the certificate check (opposition list) travels with the contents.
            if let (Some(obj), Some(c)) = (v.as_object_mut(), certificate) {
                obj.insert("certificate".into(), to_value(c)?);
            }
            Ok(v)
        }
        "fse.create" => {
            let params: FseCreateParams = params(p)?;
            let created = billing::create(&ctx.cards, &ctx.store, params).await?;
            ctx.events.publish(
                "sheet.accepted",
                json!({ "id": created.id, "number": created.number }),
            );
            ctx.batcher_wake.notify_one();
            to_value(created)
        }
        "fse.get" => {
            let FseGetParams { id } = params(p)?;
            let row = stored_sheet(ctx, id).await?;
            let mut v = to_value(billing::created(&row)?)?;
            v["lot_id"] = json!(row.lot_id);
            v["reason"] = json!(row.reason);
            Ok(v)
        }
        "fse.list" => {
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
            let state = match state {
                Some(s) => Some(
                    s.parse::<SheetState>()
                        .map_err(|_| ApiError::invalid("state", format!("unknown state {s}")))?,
                ),
                None => None,
            };
            let rows = ctx
                .store
                .call(move |q| q.list_sheets(state, limit.min(1000), after_id))
                .await?;
            to_value(
                rows.iter()
                    .map(|r| json!({ "id": r.id, "number": r.number, "state": r.state.as_str(), "lot_id": r.lot_id, "destination": r.destination, "reason": r.reason }))
                    .collect::<Vec<_>>(),
            )
        }
        "lots.list" => {
            let rows = ctx.store.call(|q| q.list_lots(1000)).await?;
            to_value(
                rows.iter()
                    .map(|l| json!({ "id": l.id, "number": l.number, "practitioner_id": l.practitioner_id, "destination": l.destination, "state": l.state.as_str(), "sheet_count": l.sheet_count, "closed_at": l.closed_at }))
                    .collect::<Vec<_>>(),
            )
        }
        "lots.get" => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct P {
                lot_id: String,
            }
            let P { lot_id } = params(p)?;
            let id = lot_id.clone();
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
                ApiError::new(api::NOT_FOUND, format!("no lot {lot_id}"), Some("lot_id"))
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
        "fse.cancel" => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct P {
                id: i64,
                reason: String,
            }
            let P { id, reason } = params(p)?;
            if reason.trim().is_empty() || reason.len() > 500 {
                return Err(ApiError::invalid("reason", "1 to 500 characters"));
            }
            let result = ctx
                .store
                .call(move |q| Ok(q.cancel_sheet(id, reason.trim())))
                .await?;
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
        "fse.resubmit" => {
            let FseGetParams { id } = params(p)?;
            let row = stored_sheet(ctx, id).await?;
            let sheet: fse_formats::fse::CareSheet =
                serde_json::from_str(&row.json).map_err(|e| {
                    ApiError::new(api::INTERNAL_ERROR, format!("stored sheet: {e}"), None)
                })?;
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
            let result = ctx.store.call(move |q| Ok(q.resubmit_sheet(id))).await?;
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
        "fse.proof" => {
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
            let signed = fse_formats::lot::SignedLot::from_der(&der).map_err(|e| {
                ApiError::new(api::INTERNAL_ERROR, format!("stored lot: {e}"), None)
            })?;
            let index = signed
                .entries
                .iter()
                .position(|e| e.sheet == row.der)
                .ok_or_else(|| {
                    ApiError::new(api::INTERNAL_ERROR, "sheet missing from its lot", None)
                })?;
            let proof = signed
                .proof(index, signed.signer_certificate.as_deref())
                .map_err(|e| ApiError::new(api::INTERNAL_ERROR, e.to_string(), None))?;
            to_value(proof)
        }
        "lots.close" => {
            let _: LotsCloseParams = params(p)?;
            ctx.close_now.store(true, Ordering::SeqCst);
            ctx.batcher_wake.notify_one();
            Ok(json!({ "requested": true }))
        }
        "transmit.now" => {
            ctx.batcher_wake.notify_one();
            Ok(json!({ "requested": true }))
        }
        "queue.alarms" => {
            let cutoff = crate::batcher::alarm_cutoff(ctx.live.get().deadline_alarm_days);
            to_value(ctx.store.call(move |q| q.deadline_alarms(&cutoff)).await?)
        }
        "returns.list" => returns_list(ctx, p).await,
        "queue.stats" => to_value(ctx.store.call(|q| q.stats()).await?),
        "system.doctor" => to_value(crate::doctor::run(ctx, &ctx.doctor).await),
        other => Err(ApiError::new(
            api::METHOD_NOT_FOUND,
            format!("unknown method {other}"),
            Some("method"),
        )),
    }
}

/// Parses parameters that hold secrets, then wipes every string of the raw parameters.
fn secret_params<T: DeserializeOwned>(p: Option<Value>) -> Result<T, ApiError> {
    let mut raw = p.unwrap_or(Value::Null);
    let parsed = serde_json::from_value(raw.clone());
    scrub(&mut raw);
    parsed.map_err(|e: serde_json::Error| {
        let msg = e.to_string();
        ApiError::invalid(
            &serde_field(&msg).unwrap_or_else(|| "params".into()),
            format!("invalid params: {msg}"),
        )
    })
}

/// A PIN from a parameter, the string wiped.
fn take_pin(mut s: String, field: &str) -> Result<Pin, ApiError> {
    let pin = Pin::new(&s);
    s.zeroize();
    pin.ok_or_else(|| ApiError::invalid(field, "the PIN is 4 digits"))
}

/// `events.subscribe`: from now on this connection also receives `event` notifications.
fn subscribe(ctx: &Context, conn: &mut Conn, p: Option<Value>) -> Result<Value, ApiError> {
    let _: serde_json::Map<String, Value> = params(p)?;
    let Some(out) = conn.out.clone() else {
        return Err(ApiError::new(
            api::INVALID_REQUEST,
            "events need a socket connection",
            None,
        ));
    };
    if conn.subscription.is_none() {
        let mut rx = ctx.events.subscribe();
        conn.subscription = Some(tokio::spawn(async move {
            loop {
                let params = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        json!({ "event": "lagged", "missed": n })
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let note = json!({ "jsonrpc": "2.0", "method": "event", "params": params });
                if out.send(encode_line(&note)).await.is_err() {
                    return;
                }
            }
        }));
    }
    Ok(json!({ "subscribed": true }))
}

async fn pin_status(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[serde(default)]
        cps_serial: Option<String>,
    }
    let P { cps_serial } = params(p)?;
    ctx.cards
        .run(move |reg| {
            let slot = reg.cps(cps_serial.as_deref())?;
            slot.pin_tries_left()
        })
        .await?
        .map(|left| json!({ "verified": left.is_none(), "tries_left": left, "blocked": left == Some(0) }))
        .map_err(|e| ApiError::card("cps", e))
}

async fn change_pin(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
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
    ctx.cards
        .run(move |reg| reg.cps(cps_serial.as_deref())?.change_pin(&old, &new))
        .await?
        .map(|()| json!({ "changed": true }))
        .map_err(|e| ApiError::card("cps", e))
}

async fn unblock_pin(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
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
    let puk = checked.ok_or_else(|| ApiError::invalid("puk", "the unblocking code is 8 digits"))?;
    let new = take_pin(new_pin, "new_pin")?;
    ctx.cards
        .run(move |reg| reg.cps(cps_serial.as_deref())?.unblock_pin(&puk, &new))
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

async fn verify_pin(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    let VerifyPinParams { pin, cps_serial } = secret_params(p)?;
    let pin = take_pin(pin, "pin")?;
    ctx.cards
        .run(move |reg| {
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

/// `returns.list`: the ARLs and payment returns recorded, newest first (`limit`, default 100,
/// at most 1000, of each), only those of one lot when `lot_id` is given.
async fn returns_list(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[serde(default)]
        lot_id: Option<String>,
        #[serde(default)]
        limit: Option<usize>,
    }
    let P { lot_id, limit } = params(p)?;
    let limit = limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::invalid("limit", "must be 1 to 1000"));
    }
    let (arls, payments) = ctx
        .store
        .call(move |q| {
            Ok((
                q.acks(lot_id.as_deref(), limit)?,
                q.payments(lot_id.as_deref(), limit)?,
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

/// The stored sheet `id`, or `NOT_FOUND`.
async fn stored_sheet(ctx: &Context, id: i64) -> Result<fse_queue::SheetRow, ApiError> {
    ctx.store
        .call(move |q| q.get_sheet(id))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cards::{Backend, VirtualReaderConfig};

    fn context(dir: &tempfile::TempDir) -> Context {
        let slot = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let (cards, _thread) = Cards::start(
            Backend::Virtual(VirtualReaderConfig { slots: vec![slot] }),
            None,
        )
        .unwrap();
        Context {
            cards,
            store: Store::open(&dir.path().join("t.db")).unwrap(),
            batcher_wake: Arc::new(Notify::new()),
            close_now: Arc::new(AtomicBool::new(false)),
            events: crate::events::Bus::default(),
            live: Default::default(),
            doctor: Arc::new(crate::doctor::Setup {
                backend: crate::config::CardBackend::Virtual,
                virtual_slots: vec![slot.to_string()],
                state_dir: dir.path().to_path_buf(),
                transport: Arc::new(crate::transport::Transport::Spool(
                    crate::transport::spool::Spool::open(
                        dir.path().join("out"),
                        dir.path().join("in"),
                    )
                    .unwrap(),
                )),
            }),
        }
    }

    async fn ask(ctx: &Context, line: &str) -> Value {
        let mut bytes = line.as_bytes().to_vec();
        serde_json::to_value(
            handle_line(ctx, &mut Conn::default(), &mut bytes)
                .await
                .unwrap(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn doctor_reports_every_check_with_the_worst_status() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        let r = ask(&ctx, r#"{"jsonrpc":"2.0","id":1,"method":"system.doctor"}"#).await;
        let checks = r["result"]["checks"].as_array().unwrap();
        let status = |name: &str| {
            checks
                .iter()
                .find(|c| c["check"] == name)
                .map(|c| c["status"].clone())
        };
        assert_eq!(status("database"), Some(json!("ok")), "{r}");
        assert_eq!(status("broker"), Some(json!("ok")), "{r}");
        assert_eq!(status("backlog"), Some(json!("ok")), "{r}");
        assert!(status("disk").is_some(), "{r}");
        // No card in the virtual reader: a warning with its fix, and so the overall verdict.
        let cards = checks.iter().find(|c| c["check"] == "cards").unwrap();
        assert_eq!(cards["status"], "warning", "{r}");
        assert!(cards["fix"].as_str().unwrap().contains("CPS"), "{r}");
        assert_eq!(r["result"]["status"], "warning", "{r}");
        // The spool's outbox gone: the transport check fails and says which directory.
        std::fs::remove_dir_all(dir.path().join("out")).unwrap();
        let r = ask(&ctx, r#"{"jsonrpc":"2.0","id":2,"method":"system.doctor"}"#).await;
        assert_eq!(r["result"]["status"], "failure", "{r}");
        let broker = r["result"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "broker")
            .unwrap()
            .clone();
        assert!(
            broker["detail"].as_str().unwrap().contains("out"),
            "{broker}"
        );
    }

    #[tokio::test]
    async fn bad_lines_get_errors_that_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        let r = ask(&ctx, "{oops").await;
        assert_eq!(r["error"]["code"], json!(api::PARSE_ERROR));
        assert_eq!(r["id"], Value::Null);
        let r = ask(&ctx, r#"{"jsonrpc":"2.0","id":1}"#).await;
        assert_eq!(r["error"]["code"], json!(api::INVALID_REQUEST));
        assert_eq!(r["error"]["data"]["field"], json!("method"));
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"1.0","id":1,"method":"system.version"}"#,
        )
        .await;
        assert_eq!(r["error"]["data"]["field"], json!("jsonrpc"));
        let r = ask(&ctx, r#"{"jsonrpc":"2.0","id":2,"method":"nope"}"#).await;
        assert_eq!(r["error"]["code"], json!(api::METHOD_NOT_FOUND));
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":3,"method":"fse.create","params":{}}"#,
        )
        .await;
        assert_eq!(r["error"]["code"], json!(api::INVALID_PARAMS));
        assert_eq!(r["error"]["data"]["field"], json!("acts"));
        let r = ask(&ctx, r#"{"jsonrpc":"2.0","id":4,"method":"fse.create","params":{"act":{"code":"G"},"extra":1}}"#).await;
        assert_eq!(r["error"]["data"]["field"], json!("extra"));
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":5,"method":"cards.verify_pin","params":{"pin":"12"}}"#,
        )
        .await;
        assert_eq!(r["error"]["data"]["field"], json!("pin"));
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":6,"method":"cards.verify_pin","params":{"pin":"1234"}}"#,
        )
        .await;
        assert_eq!(r["error"]["data"]["name"], json!("CARD_ABSENT"));
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":7,"method":"fse.create","params":{"act":{"code":"G"}}}"#,
        )
        .await;
        assert_eq!(r["error"]["data"]["name"], json!("CARD_ABSENT"));
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":8,"method":"fse.get","params":{"id":99}}"#,
        )
        .await;
        assert_eq!(r["error"]["data"]["name"], json!("NOT_FOUND"));
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":9,"method":"system.version"}"#,
        )
        .await;
        assert_eq!(r["result"]["name"], json!("fsed"));
        let mut note = br#"{"jsonrpc":"2.0","method":"system.version"}"#.to_vec();
        assert!(
            handle_line(&ctx, &mut Conn::default(), &mut note)
                .await
                .is_none(),
            "notifications get no reply"
        );
    }

    #[tokio::test]
    async fn the_connection_survives_bad_and_oversized_lines() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let bus = ctx.events.clone();
        let server = tokio::spawn(serve(listener, ctx, shutdown));
        let stream = UnixStream::connect(&path).await.unwrap();
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        let mut big = vec![b'x'; MAX_LINE + 10];
        big.push(b'\n');
        w.write_all(&big).await.unwrap();
        w.write_all(b"not json\n").await.unwrap();
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"system.version\"}\n")
            .await
            .unwrap();
        let first: Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(first["error"]["code"], json!(api::INVALID_REQUEST));
        let second: Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(second["error"]["code"], json!(api::PARSE_ERROR));
        let third: Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(third["result"]["api"], json!(1));
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"events.subscribe\"}\n")
            .await
            .unwrap();
        let sub: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(sub["result"]["subscribed"], json!(true));
        bus.publish("lot.signed", json!({"lot_id": "L1"}));
        let ev: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(
            (
                ev["method"].as_str(),
                ev["params"]["event"].as_str(),
                ev["params"]["lot_id"].as_str()
            ),
            (Some("event"), Some("lot.signed"), Some("L1"))
        );
        trigger.fire();
        server.await.unwrap();
    }
}
