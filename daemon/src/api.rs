//! The local API: JSON-RPC 2.0, one JSON object per line, on a Unix socket.
//! Each connection is served by its own task; a bad line gets an error reply
//! naming the problem and the connection stays open. Methods are documented
//! in `daemon/API.md`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fse_formats::api::{
    self, ErrorObject, FseCreateParams, FseGetParams, LotsCloseParams, VerifyPinParams,
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

use crate::access::Access;
use crate::billing;
use crate::cards::Cards;
use crate::config::ApiSection;
use crate::error::ApiError;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// Every method the dispatcher serves; any other name answers `METHOD_NOT_FOUND`.
/// `daemon/api.openrpc.json` describes each of them (a test keeps the two lists equal), and
/// `system.version` lists them.
pub const METHODS: &[&str] = &[
    "system.version",
    "cards.list",
    "cards.verify_pin",
    "cards.pin_status",
    "cards.change_pin",
    "cards.unblock_pin",
    "vitale.read",
    "fse.create",
    "fse.get",
    "fse.list",
    "fse.cancel",
    "fse.resubmit",
    "fse.proof",
    "lots.list",
    "lots.get",
    "lots.close",
    "transmit.now",
    "returns.list",
    "queue.stats",
    "queue.alarms",
    "events.subscribe",
    "system.doctor",
];

/// Longest request line accepted, in bytes.
pub const MAX_LINE: usize = 64 * 1024;
/// Bytes of waiting replies gathered into one write.
const WRITE_BATCH: usize = 64 * 1024;

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
    /// Asks the batcher to send now, even during a failed send's backoff.
    pub send_now: Arc<AtomicBool>,
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
    /// The events this connection asked for (`None`: all); `lagged` always comes.
    selection: crate::events::Selection,
}

/// The names `events.subscribe` may select: every event of `Event` in `api.openrpc.json`
/// but `lagged`, which a subscriber always gets.
pub const EVENT_NAMES: &[&str] = &[
    "card.inserted",
    "card.removed",
    "sheet.accepted",
    "sheet.cancelled",
    "sheet.resubmitted",
    "sheet.deadline",
    "sheet.paid",
    "sheet.refused",
    "lot.closed",
    "lot.signed",
    "lot.sign_failed",
    "lot.sent",
    "lot.unroutable",
    "arl.received",
    "dre_lot.sent",
    "dre_lot.unroutable",
];

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(task) = self.subscription.take() {
            task.abort();
        }
    }
}

/// JSON text, valid by construction: serialized by fsed itself.
#[derive(Debug)]
pub struct JsonText(String);

impl JsonText {
    /// `v` serialized.
    pub fn of(v: &impl serde::Serialize) -> Result<JsonText, ApiError> {
        serde_json::to_string(v)
            .map(JsonText)
            .map_err(|e| ApiError::new(api::INTERNAL_ERROR, e.to_string(), None))
    }

    /// Text fsed has just made from values it serialized (see `billing::Created`).
    pub(crate) fn trusted(text: String) -> JsonText {
        JsonText(text)
    }
}

/// One reply: `fse_formats::api::Response` as written, its result already JSON text.
#[derive(Debug)]
pub struct Reply {
    /// The request's id (null when it could not be read).
    pub id: Value,
    /// Success value.
    pub result: Option<JsonText>,
    /// Failure.
    pub error: Option<ErrorObject>,
}

impl Reply {
    /// A success.
    pub fn ok(id: Value, result: JsonText) -> Self {
        Reply {
            id,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn err(id: Value, error: ErrorObject) -> Self {
        Reply {
            id,
            result: None,
            error: Some(error),
        }
    }

    /// The reply's line, newline included: the result's text goes in as it is.
    pub fn to_line(&self) -> Vec<u8> {
        let result = self.result.as_ref().map_or(0, |r| r.0.len());
        let mut out = Vec::with_capacity(64 + result);
        out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
        let written = serde_json::to_writer(&mut out, &self.id).and_then(|()| {
            match (&self.result, &self.error) {
                (Some(r), _) => {
                    out.extend_from_slice(br#","result":"#);
                    out.extend_from_slice(r.0.as_bytes());
                    Ok(())
                }
                (None, Some(e)) => {
                    out.extend_from_slice(br#","error":"#);
                    serde_json::to_writer(&mut out, e)
                }
                (None, None) => {
                    out.extend_from_slice(br#","result":null"#);
                    Ok(())
                }
            }
        });
        if written.is_err() {
            out.clear();
            out.extend_from_slice(UNENCODABLE);
            out.push(b'\n');
            return out;
        }
        out.extend_from_slice(b"}\n");
        out
    }
}

/// What goes out when a reply cannot be encoded.
const UNENCODABLE: &[u8] =
    br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"unencodable reply"}}"#;

fn encode_line(v: &impl serde::Serialize) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).unwrap_or_else(|_| UNENCODABLE.to_vec());
    out.push(b'\n');
    out
}

/// The server's limits and who may connect, resolved at start from `[api]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most connections served at once (`api.max_connections`).
    pub max_connections: usize,
    /// Event notifications queued per connection for a client that does not read them
    /// (`api.max_queued_replies`).
    pub max_queued_replies: usize,
    /// Who may connect.
    pub access: Access,
}

impl Settings {
    /// Resolves `[api]` against the system's users and groups and the uid fsed runs as.
    pub fn from_config(section: &ApiSection) -> Settings {
        Settings {
            max_connections: section.max_connections,
            max_queued_replies: section.max_queued_replies,
            access: Access::from_config(
                section,
                &crate::access::Accounts::read_system(),
                crate::access::own_uid(),
            ),
        }
    }
}

/// Serves connections until shutdown, with the default `[api]` settings.
pub async fn serve(listener: UnixListener, ctx: Context, shutdown: Shutdown) {
    serve_with(
        listener,
        ctx,
        Settings::from_config(&ApiSection::default()),
        shutdown,
    )
    .await;
}

/// Serves connections until shutdown, then returns once every connection has finished the
/// request it was serving (no new request is read after shutdown). A connection from a process whose user and groups
/// `settings.access` does not allow, or one past `settings.max_connections`, gets one error
/// line (`PEER_NOT_ALLOWED`, `TOO_MANY_CONNECTIONS`) and is closed.
pub async fn serve_with(
    listener: UnixListener,
    ctx: Context,
    settings: Settings,
    mut shutdown: Shutdown,
) {
    tracing::info!(
        users = ?settings.access.users,
        groups = ?settings.access.groups,
        max_connections = settings.max_connections,
        "API access"
    );
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                // Out of file descriptors, say: wait a little rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(refusal) = check_peer(&stream, &settings.access) {
            refuse(stream, refusal);
            continue;
        }
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            tracing::warn!(
                limit = settings.max_connections,
                "API connection refused: too many connections"
            );
            let n = settings.max_connections;
            refuse(
                stream,
                ErrorObject::new(
                    api::TOO_MANY_CONNECTIONS,
                    format!("fsed already serves {n} connections (api.max_connections): close one or try again later"),
                    None,
                )
                .with("limit", json!(n)),
            );
            continue;
        };
        let ctx = ctx.clone();
        let sd = shutdown.clone();
        let queued = settings.max_queued_replies;
        tokio::spawn(async move {
            serve_connection(stream, ctx, queued, sd).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it is done.
    let _ = limit
        .acquire_many(u32::try_from(settings.max_connections).unwrap_or(u32::MAX))
        .await;
}

/// Checks the connecting process's credentials (`SO_PEERCRED`) against `access`; a refusal is
/// logged with its uid, gid and pid.
fn check_peer(stream: &UnixStream, access: &Access) -> Result<(), ErrorObject> {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "API connection refused: no peer credentials");
            return Err(ErrorObject::new(
                api::PEER_NOT_ALLOWED,
                format!("the connecting process's credentials cannot be read: {e}"),
                None,
            ));
        }
    };
    let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid());
    let supplementary = || {
        pid.map(|p| crate::access::process_groups(p, uid))
            .unwrap_or_default()
    };
    if access.allows(uid, gid, supplementary) {
        return Ok(());
    }
    tracing::warn!(
        uid,
        gid,
        pid = pid.unwrap_or(0),
        "API connection refused: user not in api.allowed_users, no group in api.allowed_groups"
    );
    Err(ErrorObject::new(
        api::PEER_NOT_ALLOWED,
        format!("user {uid} (group {gid}) may not use this API: see api.allowed_users and api.allowed_groups"),
        None,
    )
    .with("uid", json!(uid))
    .with("gid", json!(gid)))
}

/// Writes one error line to a connection refused, without waiting, and closes it.
fn refuse(stream: UnixStream, error: ErrorObject) {
    let line = Reply::err(Value::Null, error).to_line();
    // The send buffer of a connection just accepted is empty: the short line fits at once.
    // A socket that cannot take it is closed all the same.
    if let Ok(mut s) = stream.into_std() {
        let _ = std::io::Write::write_all(&mut s, &line);
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

async fn serve_connection(stream: UnixStream, ctx: Context, queued: usize, mut shutdown: Shutdown) {
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    // Replies are written by the request's own task (one request is served at a time, in
    // order: while a reply waits for the client to read, this connection's requests wait in
    // its socket). Events go through a writer task: at most `queued` of them wait for a
    // client that does not read. Both write whole lines under the lock.
    // (`ApiSection::validate` keeps `queued` at 1 or more; a channel of 0 would panic.)
    let write = Arc::new(tokio::sync::Mutex::new(write));
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(queued.max(1));
    let events_write = Arc::clone(&write);
    let writer = tokio::spawn(async move {
        let mut batch = Vec::new();
        while let Some(line) = out_rx.recv().await {
            // The lines already waiting go in the same write.
            batch.clear();
            batch.extend_from_slice(&line);
            while batch.len() < WRITE_BATCH {
                match out_rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if events_write.lock().await.write_all(&batch).await.is_err() {
                return;
            }
        }
    });
    let mut conn = Conn {
        out: Some(out_tx),
        subscription: None,
        selection: Default::default(),
    };
    serve_lines(&mut reader, &ctx, &mut conn, &write, &mut shutdown).await;
    drop(conn);
    let _ = writer.await;
}

async fn serve_lines(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    ctx: &Context,
    conn: &mut Conn,
    out: &tokio::sync::Mutex<tokio::net::unix::OwnedWriteHalf>,
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
                Some(Reply::err(
                    Value::Null,
                    ErrorObject::new(
                        api::INVALID_REQUEST,
                        format!("request line longer than {MAX_LINE} bytes: skipped"),
                        None,
                    )
                    .with("limit", json!(MAX_LINE)),
                ))
            }
            Ok(_) => handle_line(ctx, conn, &mut line).await,
        };
        // The filled part only: the bytes past it were wiped with the line that left them.
        line.as_mut_slice().zeroize();
        line.clear();
        if let Some(reply) = reply {
            if out.lock().await.write_all(&reply.to_line()).await.is_err() {
                return;
            }
        }
    }
}

/// Answers one line; `None` for a notification (a request without an `id` member) and for
/// an empty line.
pub async fn handle_line(ctx: &Context, conn: &mut Conn, line: &mut [u8]) -> Option<Reply> {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t.trim(),
        Err(e) => {
            return Some(Reply::err(
                Value::Null,
                ErrorObject::new(
                    api::PARSE_ERROR,
                    format!(
                        "request is not UTF-8 (invalid byte at offset {})",
                        e.valid_up_to()
                    ),
                    None,
                ),
            ))
        }
    };
    if text.is_empty() {
        return None;
    }
    let mut value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Some(Reply::err(
                Value::Null,
                ErrorObject::new(api::PARSE_ERROR, format!("invalid JSON: {e}"), None),
            ))
        }
    };
    let Value::Object(obj) = &mut value else {
        scrub(&mut value);
        return Some(Reply::err(
            Value::Null,
            ErrorObject::new(
                api::INVALID_REQUEST,
                "a request is one JSON object per line (batches are not supported)",
                None,
            ),
        ));
    };
    let envelope = envelope(obj);
    // What is left of the object (and all of it when refused) may hold a PIN.
    scrub(&mut value);
    let Envelope { id, method, params } = match envelope {
        Ok(e) => e,
        Err(refused) => return Some(*refused),
    };
    if !METHODS.contains(&method.as_str()) {
        let mut refused = params;
        if let Some(p) = refused.as_mut() {
            scrub(p);
        }
        return id.map(|id| {
            Reply::err(
                id,
                ErrorObject::new(
                    api::METHOD_NOT_FOUND,
                    format!("unknown method {:?}", shown(&method)),
                    Some("method"),
                ),
            )
        });
    }
    // The span follows the request's future across threads (`instrument`); an entered guard
    // held over an `.await` would corrupt the subscriber's span registry.
    let span = tracing::info_span!("request", method = %method);
    let result = if method == "events.subscribe" {
        span.in_scope(|| subscribe(ctx, conn, params))
            .and_then(|v| JsonText::of(&v))
    } else {
        use tracing::Instrument;
        dispatch(ctx, &method, params).instrument(span).await
    };
    let id = id?;
    Some(match result {
        Ok(v) => Reply::ok(id, v),
        Err(ApiError(e)) => Reply::err(id, e),
    })
}

/// A request's envelope, checked.
struct Envelope {
    /// The id to answer with; `None` for a notification (no `id` member).
    id: Option<Value>,
    /// The method named.
    method: String,
    /// The parameters (an object, an array, or none).
    params: Option<Value>,
}

/// Takes the envelope out of a request object: `jsonrpc` must be `"2.0"`, `id` (optional) a
/// string, a number or null, `method` a string, `params` (optional) an object or an array. A
/// refusal is the `INVALID_REQUEST` reply, with the request's id when it could be read.
fn envelope(obj: &mut serde_json::Map<String, Value>) -> Result<Envelope, Box<Reply>> {
    let refuse = |id: Value, message: &str, field: &str| {
        Box::new(Reply::err(
            id,
            ErrorObject::new(api::INVALID_REQUEST, message, Some(field)),
        ))
    };
    let id = obj.remove("id");
    let reply_id = match &id {
        None => Value::Null,
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Null)) => v.clone(),
        Some(_) => {
            return Err(refuse(
                Value::Null,
                "id must be a string, a number or null",
                "id",
            ))
        }
    };
    match obj.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        _ => return Err(refuse(reply_id, "jsonrpc must be \"2.0\"", "jsonrpc")),
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        Some(_) => return Err(refuse(reply_id, "method must be a string", "method")),
        None => return Err(refuse(reply_id, "method is missing", "method")),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => None,
        Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
        Some(mut other) => {
            scrub(&mut other);
            return Err(refuse(reply_id, "params must be an object", "params"));
        }
    };
    Ok(Envelope { id, method, params })
}

/// Parameters decoded into `T` from `p` (absent or null: `{}`). Parameters go by name: an
/// array is refused. A refusal names the field by its path (`act.code`, `acts[1].date`); for
/// `secret` parameters the value at fault is not echoed.
fn decode<T: DeserializeOwned>(p: &Value, secret: bool) -> Result<T, ApiError> {
    let empty = Value::Object(Default::default());
    let p = match p {
        Value::Null => &empty,
        Value::Array(_) => {
            return Err(ApiError::invalid(
                "params",
                "invalid params: parameters go by name, in an object",
            ))
        }
        other => other,
    };
    serde_path_to_error::deserialize(p).map_err(|e| {
        let reason = e.inner().to_string();
        let path = e.path().to_string();
        // An unknown or missing member is named in the message; the path is its parent's, or
        // its own for an unknown member. A member named "" leaves its parent as the field.
        let named = member_named(&reason);
        let field = match (path.as_str(), named) {
            (at, Some("")) => match at.strip_suffix('.') {
                Some(parent) if !parent.is_empty() => parent.to_string(),
                _ => "params".to_string(),
            },
            (".", Some(n)) => n.to_string(),
            ("." | "", None) => "params".to_string(),
            (parent, Some(n)) if parent != n && !parent.ends_with(&format!(".{n}")) => {
                format!("{parent}.{n}")
            }
            (at, _) => at.to_string(),
        };
        let reason = if secret && named.is_none() {
            "wrong type or value (not shown: it may be secret)".to_string()
        } else {
            shown(&reason)
        };
        let field = shown(&field);
        ApiError::invalid(&field, format!("invalid params: {field}: {reason}"))
    })
}

/// Longest part of a client's value a message echoes, in characters.
const SHOWN: usize = 200;

/// `text`, cut to [`SHOWN`] characters: a message names what is wrong without echoing a whole
/// 64 KiB line.
fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The member a serde message names: `unknown field `x`, expected …` or `missing field `x``
/// (the name may itself hold backquotes).
fn member_named(reason: &str) -> Option<&str> {
    if let Some(rest) = reason.strip_prefix("unknown field `") {
        let end = rest
            .rfind("`, expected")
            .or_else(|| rest.rfind("`, there are no fields"))?;
        Some(&rest[..end])
    } else {
        reason.strip_prefix("missing field `")?.strip_suffix('`')
    }
}

fn params<T: DeserializeOwned>(p: Option<Value>) -> Result<T, ApiError> {
    decode(&p.unwrap_or(Value::Null), false)
}

/// For a method without parameters: absent, null or `{}`; any member is refused by name.
fn no_params(p: Option<Value>) -> Result<(), ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct None_ {}
    params::<None_>(p).map(|_| ())
}

fn to_value<T: serde::Serialize>(v: T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::new(api::INTERNAL_ERROR, e.to_string(), None))
}

/// Overwrites every string of a JSON value (the PIN must not linger in memory): fsed's
/// requests, and fsectl's before they go.
pub fn scrub(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(scrub),
        Value::Object(o) => o.values_mut().for_each(scrub),
        _ => {}
    }
}

/// Answers a method with its result as JSON text. `fse.create`, the hot path, writes its
/// answer around the sheet's stored JSON text; the others go through a `Value`.
async fn dispatch(ctx: &Context, method: &str, p: Option<Value>) -> Result<JsonText, ApiError> {
    if method == "fse.create" {
        let params: FseCreateParams = params(p)?;
        let created = billing::create(&ctx.cards, &ctx.store, params).await?;
        ctx.events.publish(
            "sheet.accepted",
            json!({ "id": created.id, "number": created.number }),
        );
        ctx.batcher_wake.notify_one();
        return Ok(created.into_json());
    }
    JsonText::of(&dispatch_value(ctx, method, p).await?)
}

async fn dispatch_value(ctx: &Context, method: &str, p: Option<Value>) -> Result<Value, ApiError> {
    match method {
        "system.version" => {
            no_params(p)?;
            Ok(json!({
                "name": "fsed", "version": env!("CARGO_PKG_VERSION"), "api": 1, "methods": METHODS,
            }))
        }
        "cards.list" => {
            no_params(p)?;
            to_value(ctx.cards.list().await?)
        }
        "cards.verify_pin" => verify_pin(ctx, p).await,
        "cards.pin_status" => pin_status(ctx, p).await,
        "cards.change_pin" => change_pin(ctx, p).await,
        "cards.unblock_pin" => unblock_pin(ctx, p).await,
        "vitale.read" => {
            no_params(p)?;
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
                Some(s) => Some(s.parse::<SheetState>().map_err(|_| {
                    ApiError::invalid("state", format!("unknown state {:?}", shown(&s)))
                })?),
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
            no_params(p)?;
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
        "fse.cancel" => {
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
                .call(move |q| Ok(q.cancel_sheet(id, reason.trim())))
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
            no_params(p)?;
            ctx.send_now.store(true, Ordering::SeqCst);
            ctx.batcher_wake.notify_one();
            Ok(json!({ "requested": true }))
        }
        "queue.alarms" => {
            no_params(p)?;
            let cutoff = crate::batcher::alarm_cutoff(ctx.live.get().deadline_alarm_days);
            to_value(ctx.store.call(move |q| q.deadline_alarms(&cutoff)).await?)
        }
        "returns.list" => returns_list(ctx, p).await,
        "queue.stats" => {
            no_params(p)?;
            to_value(ctx.store.call(|q| q.stats()).await?)
        }
        "system.doctor" => {
            no_params(p)?;
            to_value(crate::doctor::run(ctx, &ctx.doctor).await)
        }
        // `handle_line` lets only the names of `METHODS` through; a test calls each of them.
        other => Err(ApiError::new(
            api::INTERNAL_ERROR,
            format!("method {other} is listed but not served"),
            Some("method"),
        )),
    }
}

/// Parses parameters that hold secrets, then wipes every string of the raw parameters.
fn secret_params<T: DeserializeOwned>(p: Option<Value>) -> Result<T, ApiError> {
    let mut raw = p.unwrap_or(Value::Null);
    let parsed = decode(&raw, true);
    scrub(&mut raw);
    parsed
}

/// A PIN from a parameter, the string wiped.
fn take_pin(mut s: String, field: &str) -> Result<Pin, ApiError> {
    let pin = Pin::new(&s);
    s.zeroize();
    pin.ok_or_else(|| ApiError::invalid(field, format!("{field}: the PIN is 4 digits")))
}

/// `events.subscribe`: from now on this connection also receives `event` notifications.
fn subscribe(ctx: &Context, conn: &mut Conn, p: Option<Value>) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[serde(default)]
        events: Option<Vec<String>>,
    }
    let P { events } = params(p)?;
    for (i, name) in events.iter().flatten().enumerate() {
        if !EVENT_NAMES.contains(&name.as_str()) {
            return Err(ApiError::invalid(
                &format!("events[{i}]"),
                format!(
                    "unknown event {:?} (one of {})",
                    shown(name),
                    EVENT_NAMES.join(", ")
                ),
            ));
        }
    }
    let Some(out) = conn.out.clone() else {
        return Err(ApiError::new(
            api::INVALID_REQUEST,
            "events need a socket connection",
            None,
        ));
    };
    // A second call changes the selection of the running subscription.
    conn.selection.set(events);
    if conn.subscription.is_none() {
        let mut sub = ctx.events.subscribe(conn.selection.clone());
        conn.subscription = Some(tokio::spawn(async move {
            while let Some(received) = sub.recv().await {
                let params = match received {
                    crate::events::Received::Event(ev) => ev,
                    crate::events::Received::Lagged(n) => {
                        crate::events::event("lagged", json!({ "missed": n }))
                    }
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
    let puk =
        checked.ok_or_else(|| ApiError::invalid("puk", "puk: the unblocking code is 8 digits"))?;
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
        return Err(ApiError::invalid("limit", "limit: 1 to 1000"));
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
            Backend::Virtual(VirtualReaderConfig {
                slots: vec![fse_formats::vpcd::Endpoint::Tcp(slot)],
            }),
            None,
        )
        .unwrap();
        Context {
            cards,
            store: Store::open(&dir.path().join("t.db")).unwrap(),
            batcher_wake: Arc::new(Notify::new()),
            close_now: Arc::new(AtomicBool::new(false)),
            send_now: Arc::new(AtomicBool::new(false)),
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
        let reply = handle_line(ctx, &mut Conn::default(), &mut bytes)
            .await
            .unwrap();
        let line = reply.to_line();
        assert_eq!(line.last(), Some(&b'\n'), "one line");
        serde_json::from_slice(&line).unwrap()
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
    async fn the_envelope_is_checked_and_the_id_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        let refused = |r: &Value, code: i64, field: Option<&str>| {
            assert_eq!(r["error"]["code"], json!(code), "{r}");
            assert_eq!(r["error"]["data"]["field"].as_str(), field, "{r}");
        };
        // A null id is an id: the request is answered, with it.
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":null,"method":"system.version"}"#,
        )
        .await;
        assert_eq!(
            (r["id"].clone(), r["result"]["api"].clone()),
            (Value::Null, json!(1))
        );
        assert!(r.as_object().unwrap().contains_key("id"), "{r}");
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":"a-1","method":"system.version"}"#,
        )
        .await;
        assert_eq!(r["id"], json!("a-1"));
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":{"n":1},"method":"system.version"}"#,
        )
        .await;
        refused(&r, api::INVALID_REQUEST, Some("id"));
        assert_eq!(r["id"], Value::Null);
        let r = ask(
            &ctx,
            r#"[{"jsonrpc":"2.0","id":1,"method":"system.version"}]"#,
        )
        .await;
        refused(&r, api::INVALID_REQUEST, None);
        let r = ask(&ctx, r#"["2.0",1,"system.version"]"#).await;
        refused(&r, api::INVALID_REQUEST, None);
        let r = ask(&ctx, r#"{"jsonrpc":"2.0","id":2,"method":7}"#).await;
        refused(&r, api::INVALID_REQUEST, Some("method"));
        assert_eq!(r["id"], json!(2));
        let r = ask(&ctx, r#"{"id":3,"method":"system.version"}"#).await;
        refused(&r, api::INVALID_REQUEST, Some("jsonrpc"));
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":4,"method":"fse.get","params":"x"}"#,
        )
        .await;
        refused(&r, api::INVALID_REQUEST, Some("params"));
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":5,"method":"fse.get","params":[5]}"#,
        )
        .await;
        refused(&r, api::INVALID_PARAMS, Some("params"));
        let r = ask(&ctx, "\u{feff}{}").await;
        assert_eq!(r["error"]["code"], json!(api::PARSE_ERROR), "{r}");
        let mut bad = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}".to_vec();
        let r = handle_line(&ctx, &mut Conn::default(), &mut bad)
            .await
            .unwrap();
        assert_eq!(r.error.unwrap().code, api::PARSE_ERROR);
        // Blank lines and notifications, even of unknown methods, get no reply.
        for line in ["", "  \t", r#"{"jsonrpc":"2.0","method":"no.such"}"#] {
            let mut bytes = line.as_bytes().to_vec();
            assert!(
                handle_line(&ctx, &mut Conn::default(), &mut bytes)
                    .await
                    .is_none(),
                "{line}"
            );
        }
    }

    #[tokio::test]
    async fn invalid_params_name_the_field_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        let field = |r: &Value| {
            assert_eq!(r["error"]["code"], json!(api::INVALID_PARAMS), "{r}");
            r["error"]["data"]["field"].as_str().unwrap().to_string()
        };
        for (params, expected) in [
            (r#"{"act":{"code":5}}"#, "act.code"),
            (
                r#"{"acts":[{"code":"G"},{"code":"G","date":5}]}"#,
                "acts[1].date",
            ),
            (r#"{"act":{"code":"G","colour":1}}"#, "act.colour"),
            (r#"{"act":{"code":"G"},"extra":1}"#, "extra"),
            (r#"{"act":{"coefficient":100}}"#, "act.code"),
            (r#"{"act":{"code":"G"},"care_path":"nowhere"}"#, "care_path"),
            (r#"{"act":{"code":"G"},"beneficiary":-1}"#, "beneficiary"),
            (r#"{"act":{"code":"G"},"":1}"#, "params"),
            (r#"{"act":{"code":"G","":1}}"#, "act"),
            (r#"{"act":{"code":"G"},"a`b, expected":1}"#, "a`b, expected"),
        ] {
            let line =
                format!(r#"{{"jsonrpc":"2.0","id":1,"method":"fse.create","params":{params}}}"#);
            assert_eq!(field(&ask(&ctx, &line).await), expected, "{params}");
        }
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":1,"method":"queue.stats","params":{"x":1}}"#,
        )
        .await;
        assert_eq!(field(&r), "x");
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":1,"method":"queue.stats","params":{}}"#,
        )
        .await;
        assert!(r["result"]["sheets"].is_object(), "{r}");
        // Messages echo a bounded part of what they refuse.
        let long = "é".repeat(10_000);
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"fse.list","params":{{"state":"{long}"}}}}"#
        );
        let r = ask(&ctx, &line).await;
        assert_eq!(field(&r), "state");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.chars().count() < 300, "{message}");
        let line =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"fse.get","params":{{"id":"{long}"}}}}"#);
        let message = ask(&ctx, &line).await["error"]["message"].to_string();
        assert!(message.chars().count() < 300, "{message}");
        // A PIN of the wrong type is not echoed.
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":1,"method":"cards.verify_pin","params":{"pin":9876}}"#,
        )
        .await;
        assert_eq!(field(&r), "pin");
        assert!(!r.to_string().contains("9876"), "{r}");
    }

    #[test]
    fn the_events_one_may_select_are_those_of_the_schema() {
        let doc: Value = serde_json::from_str(include_str!("../api.openrpc.json")).unwrap();
        let described: Vec<&str> = doc["components"]["schemas"]["Event"]["properties"]["event"]
            ["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .filter(|e| *e != "lagged")
            .collect();
        assert_eq!(described, EVENT_NAMES);
        let selectable: Vec<&str> = doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "events.subscribe")
            .unwrap()["params"][0]["schema"]["items"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(selectable, EVENT_NAMES);
    }

    #[test]
    fn the_schema_describes_exactly_the_methods_served() {
        let doc: Value = serde_json::from_str(include_str!("../api.openrpc.json")).unwrap();
        let described: Vec<&str> = doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            described, METHODS,
            "daemon/api.openrpc.json and api::METHODS"
        );
        let codes: std::collections::BTreeSet<i64> = doc["components"]["errors"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, e)| {
                assert_eq!(api::code_name(e["code"].as_i64().unwrap()), name);
                e["code"].as_i64().unwrap()
            })
            .collect();
        let stable: std::collections::BTreeSet<i64> = api::ERROR_CODES.iter().copied().collect();
        assert_eq!(codes, stable, "the schema's error codes");
    }

    #[tokio::test]
    async fn every_listed_method_is_served_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        for method in METHODS {
            let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{}}}}"#);
            let r = ask(&ctx, &line).await;
            let code = r["error"]["code"].as_i64();
            assert_ne!(code, Some(api::METHOD_NOT_FOUND), "{method}: {r}");
            assert_ne!(code, Some(api::INTERNAL_ERROR), "{method}: {r}");
        }
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":1,"method":"system.version"}"#,
        )
        .await;
        assert_eq!(r["result"]["methods"], json!(METHODS));
        for unlisted in [
            "rpc.discover",
            "fse.delete",
            "system.version ",
            "Cards.list",
        ] {
            let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{unlisted}"}}"#);
            let r = ask(&ctx, &line).await;
            assert_eq!(
                r["error"]["code"],
                json!(api::METHOD_NOT_FOUND),
                "{unlisted}"
            );
        }
    }

    /// Serves `settings` on a socket in `dir`; returns its path and what stops it.
    fn serving(
        dir: &tempfile::TempDir,
        name: &str,
        settings: Settings,
    ) -> (
        std::path::PathBuf,
        crate::shutdown::Trigger,
        tokio::task::JoinHandle<()>,
    ) {
        let ctx = context(dir);
        let path = dir.path().join(name);
        let listener = UnixListener::bind(&path).unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let server = tokio::spawn(serve_with(listener, ctx, settings, shutdown));
        (path, trigger, server)
    }

    /// Everything the server writes to a connection that sends nothing, until it closes it.
    async fn refusal(path: &std::path::Path) -> Vec<Value> {
        let mut stream = UnixStream::connect(path).await.unwrap();
        let mut all = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_string(&mut all),
        )
        .await
        .expect("the refused connection is closed")
        .unwrap();
        all.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Asks `system.version`; a refused connection may fail the write, never the reply line.
    async fn version(stream: &mut BufReader<UnixStream>) -> Value {
        let _ = stream
            .get_mut()
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"system.version\"}\n")
            .await;
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        serde_json::from_str(&line).unwrap()
    }

    #[tokio::test]
    async fn a_peer_outside_the_allowlist_gets_one_error_line_and_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let me = crate::access::own_uid().unwrap();
        let only = |users: &[u32]| Settings {
            max_connections: 4,
            max_queued_replies: 4,
            access: Access {
                users: users.iter().copied().collect(),
                groups: Default::default(),
            },
        };
        let (path, trigger, server) = serving(&dir, "closed.sock", only(&[me.wrapping_add(1)]));
        let lines = refusal(&path).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        let e = &lines[0]["error"];
        assert_eq!(e["code"], json!(api::PEER_NOT_ALLOWED), "{e}");
        assert_eq!(e["data"]["name"], json!("PEER_NOT_ALLOWED"), "{e}");
        assert_eq!(e["data"]["uid"], json!(me), "{e}");
        assert_eq!(lines[0]["id"], Value::Null);
        trigger.fire();
        server.await.unwrap();
        // The same user listed is served.
        let (path, trigger, server) = serving(&dir, "open.sock", only(&[me]));
        let mut s = BufReader::new(UnixStream::connect(&path).await.unwrap());
        assert_eq!(version(&mut s).await["result"]["name"], json!("fsed"));
        trigger.fire();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_past_the_limit_gets_one_error_line_and_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let me = crate::access::own_uid().unwrap();
        let settings = Settings {
            max_connections: 2,
            max_queued_replies: 4,
            access: Access {
                users: [me].into(),
                groups: Default::default(),
            },
        };
        let (path, trigger, server) = serving(&dir, "s.sock", settings);
        let mut first = BufReader::new(UnixStream::connect(&path).await.unwrap());
        let mut second = BufReader::new(UnixStream::connect(&path).await.unwrap());
        assert_eq!(version(&mut first).await["id"], json!(7));
        assert_eq!(version(&mut second).await["id"], json!(7));
        let lines = refusal(&path).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        let e = &lines[0]["error"];
        assert_eq!(e["code"], json!(api::TOO_MANY_CONNECTIONS), "{e}");
        assert_eq!(e["data"]["limit"], json!(2), "{e}");
        // The served connections go on; once one closes, a new one is served.
        assert_eq!(version(&mut second).await["result"]["api"], json!(1));
        drop(first);
        let mut served = false;
        for _ in 0..100 {
            let mut s = BufReader::new(UnixStream::connect(&path).await.unwrap());
            if version(&mut s).await.get("result").is_some() {
                served = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(served, "a slot freed is taken again");
        trigger.fire();
        server.await.unwrap();
    }

    /// fsed's API served in `dir`, and one connection to it: the event bus, the stop, the
    /// server task, the connection's lines and its writing half.
    async fn one_connection(
        dir: &tempfile::TempDir,
    ) -> (
        crate::events::Bus,
        crate::shutdown::Trigger,
        tokio::task::JoinHandle<()>,
        tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
        tokio::net::unix::OwnedWriteHalf,
    ) {
        let ctx = context(dir);
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let bus = ctx.events.clone();
        let server = tokio::spawn(serve(listener, ctx, shutdown));
        let stream = UnixStream::connect(&path).await.unwrap();
        let (r, w) = stream.into_split();
        (bus, trigger, server, BufReader::new(r).lines(), w)
    }

    #[tokio::test]
    async fn the_connection_survives_bad_and_oversized_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (bus, trigger, server, mut lines, mut w) = one_connection(&dir).await;
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

    #[tokio::test]
    async fn a_subscriber_gets_only_the_events_it_selected_and_may_change_them() {
        let dir = tempfile::tempdir().unwrap();
        let (bus, trigger, server, mut lines, mut w) = one_connection(&dir).await;
        let mut next = async || -> Value {
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap()
        };
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"events.subscribe\",\"params\":{\"events\":[\"lot.sent\",\"lot.sent.typo\"]}}\n")
            .await
            .unwrap();
        let refused = next().await;
        assert_eq!(
            refused["error"]["code"],
            json!(api::INVALID_PARAMS),
            "{refused}"
        );
        assert_eq!(
            refused["error"]["data"]["field"],
            json!("events[1]"),
            "{refused}"
        );
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"events.subscribe\",\"params\":{\"events\":[\"lot.sent\"]}}\n")
            .await
            .unwrap();
        assert_eq!(next().await["result"]["subscribed"], json!(true));
        bus.publish("sheet.accepted", json!({"id": 1}));
        bus.publish("lot.sent", json!({"lot_id": "L1"}));
        let ev = next().await;
        assert_eq!(ev["params"]["event"], json!("lot.sent"), "{ev}");
        // A second call changes the selection.
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"events.subscribe\",\"params\":{\"events\":[\"sheet.accepted\"]}}\n")
            .await
            .unwrap();
        assert_eq!(next().await["id"], json!(3));
        bus.publish("lot.sent", json!({"lot_id": "L2"}));
        bus.publish("sheet.accepted", json!({"id": 2}));
        let ev = next().await;
        assert_eq!(
            (ev["params"]["event"].as_str(), ev["params"]["id"].as_i64()),
            (Some("sheet.accepted"), Some(2)),
            "{ev}"
        );
        trigger.fire();
        server.await.unwrap();
    }
}
