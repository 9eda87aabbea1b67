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
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
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
    "queue.backup",
    "events.subscribe",
    "system.doctor",
    "store.verify",
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
    "reader.found",
    "reader.lost",
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
    "lot.resent",
    "arl.received",
    "return.dead_lettered",
    "dre_lot.sent",
    "dre_lot.unroutable",
    "store.damaged",
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

/// A request's id as its reply carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    /// `null`: the request's id is null, or could not be read.
    Null,
    /// The id's JSON text as the client wrote it, a string or a number, echoed byte for byte
    /// (`9007199254740993`, `1e2` and `123456789012345678901234567890` come back as written).
    Text(Box<str>),
}

impl Id {
    /// The id of a request's `id` member, as the client wrote it, when it may be one: a
    /// string, a number (any JSON number within ±1.8e308, the range of a double: echoed as
    /// written) or null. `raw` must be [`readable`].
    fn of(raw: &RawValue) -> Option<Id> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'n') => Some(Id::Null),
            Some(b'"' | b'-' | b'0'..=b'9') => Some(Id::Text(text.into())),
            _ => None,
        }
    }

    fn text(&self) -> &[u8] {
        match self {
            Id::Null => b"null",
            Id::Text(t) => t.as_bytes(),
        }
    }
}

/// Whether serde_json reads `raw`, scanned only (a `RawValue`), as a value: not a lone
/// surrogate escape, a number out of a double's range, nesting too deep. So a request's `id`
/// is refused as any other member would be.
fn readable(raw: &RawValue) -> Result<(), serde_json::Error> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<ValidString>(text).map(|_| ()),
        Some(b'-' | b'0'..=b'9') => serde_json::from_str::<f64>(text).map(|_| ()),
        Some(b'[' | b'{') => {
            // Read inside brackets: as deep as it was inside the request object.
            serde_json::from_str::<Value>(&format!("[{text}]")).map(|_| ())
        }
        _ => Ok(()),
    }
}

/// A JSON string checked (escapes and surrogates) without being kept.
struct ValidString;

impl<'de> serde::Deserialize<'de> for ValidString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Check;
        impl serde::de::Visitor<'_> for Check {
            type Value = ValidString;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, _: &str) -> Result<ValidString, E> {
                Ok(ValidString)
            }
        }
        d.deserialize_str(Check)
    }
}

/// One reply: `fse_formats::api::Response` as written, its result already JSON text.
#[derive(Debug)]
pub struct Reply {
    /// The request's id (null when it could not be read).
    pub id: Id,
    /// Success value.
    pub result: Option<JsonText>,
    /// Failure.
    pub error: Option<ErrorObject>,
}

impl Reply {
    /// A success.
    pub fn ok(id: Id, result: JsonText) -> Self {
        Reply {
            id,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn err(id: Id, error: ErrorObject) -> Self {
        Reply {
            id,
            result: None,
            error: Some(error),
        }
    }

    /// The reply's line, newline included: the id and the result's text go in as they are.
    pub fn to_line(&self) -> Vec<u8> {
        let result = self.result.as_ref().map_or(0, |r| r.0.len());
        let id = self.id.text();
        let mut out = Vec::with_capacity(64 + id.len() + result);
        out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
        out.extend_from_slice(id);
        let written = match (&self.result, &self.error) {
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
        };
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
    /// Most connections served at once for one user's processes (`api.max_connections_per_uid`).
    pub max_connections_per_uid: usize,
    /// How long a connection may send no request line while subscribed to no events
    /// (`api.idle_timeout_secs`).
    pub idle_timeout: std::time::Duration,
    /// Who may connect.
    pub access: Access,
}

impl Settings {
    /// Resolves `[api]` against the system's users and groups and the uid fsed runs as.
    pub fn from_config(section: &ApiSection) -> Settings {
        Settings {
            max_connections: section.max_connections,
            max_queued_replies: section.max_queued_replies,
            max_connections_per_uid: section.max_connections_per_uid,
            idle_timeout: std::time::Duration::from_secs(section.idle_timeout_secs),
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
/// request it was serving (no new request is read after shutdown). A connection from a process
/// whose user and groups `settings.access` does not allow, one past
/// `settings.max_connections_per_uid` for its user, or one past `settings.max_connections`,
/// gets one error line (`PEER_NOT_ALLOWED`, `TOO_MANY_CONNECTIONS_FOR_PEER`,
/// `TOO_MANY_CONNECTIONS`) and is closed (see `refuse`). A connection idle for
/// `settings.idle_timeout` (see `serve_lines`) is closed with an `IDLE_TIMEOUT` line.
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
        max_connections_per_uid = settings.max_connections_per_uid,
        idle_timeout = ?settings.idle_timeout,
        "API access"
    );
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    let per_uid = PerUid::default();
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
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
        let uid = match check_peer(&stream, &settings.access) {
            Ok(uid) => uid,
            Err(refusal) => {
                refuse(stream, refusal, &refusals);
                continue;
            }
        };
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
                &refusals,
            );
            continue;
        };
        let Some(uid_slot) = per_uid.take(uid, settings.max_connections_per_uid) else {
            let n = settings.max_connections_per_uid;
            tracing::warn!(
                uid,
                limit = n,
                "API connection refused: too many connections for this user"
            );
            refuse(
                stream,
                ErrorObject::new(
                    api::TOO_MANY_CONNECTIONS_FOR_PEER,
                    format!("fsed already serves {n} connections of user {uid} (api.max_connections_per_uid): close one or try again later"),
                    None,
                )
                .with("limit", json!(n))
                .with("uid", json!(uid)),
                &refusals,
            );
            continue;
        };
        let ctx = ctx.clone();
        let sd = shutdown.clone();
        let (queued, idle) = (settings.max_queued_replies, settings.idle_timeout);
        tokio::spawn(async move {
            serve_connection(stream, ctx, queued, idle, sd).await;
            drop(uid_slot);
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it is done.
    let _ = limit
        .acquire_many(u32::try_from(settings.max_connections).unwrap_or(u32::MAX))
        .await;
}

/// Connections served per user (uid).
#[derive(Default, Clone)]
struct PerUid(Arc<std::sync::Mutex<std::collections::HashMap<u32, usize>>>);

impl PerUid {
    /// One more connection of `uid`, unless it has `limit` already; given back when dropped.
    fn take(&self, uid: u32, limit: usize) -> Option<UidSlot> {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = counts.entry(uid).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(UidSlot {
            of: self.clone(),
            uid,
        })
    }
}

/// One connection of a user, counted in [`PerUid`] while it lives.
struct UidSlot {
    of: PerUid,
    uid: u32,
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut counts = self
            .of
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.uid);
            }
        }
    }
}

/// Checks the connecting process's credentials (`SO_PEERCRED`) against `access`: its uid when
/// allowed; a refusal is logged with its uid, gid and pid.
fn check_peer(stream: &UnixStream, access: &Access) -> Result<u32, ErrorObject> {
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
        return Ok(uid);
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

/// Refused connections answered at once by a task of their own; past this, a refused
/// connection gets its error line at once and is closed ([`refuse_now`]), so that a flood of
/// connections holds at most this many tasks and buffers.
const REFUSALS_AT_ONCE: usize = 64;
/// How long a refused connection's first request line is waited for.
const REFUSAL_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long, and how many bytes, of what a refused client sends after its error line are read
/// and thrown away before the connection closes (its writes then succeed).
const REFUSAL_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);
const REFUSAL_DRAIN_BYTES: u64 = 64 * 1024;

/// Refuses a connection with `error`. A client usually writes its request before it reads:
/// closing at once could fail its write (`EPIPE`) before it reads why. So a task waits (at
/// most [`REFUSAL_WAIT`]) for the first request line (at most [`MAX_LINE`] bytes), answers
/// the error under that request's id (null when none can be read), closes its writing half,
/// reads and discards what the client still sends (at most [`REFUSAL_DRAIN`] and
/// [`REFUSAL_DRAIN_BYTES`]) and closes. With [`REFUSALS_AT_ONCE`] such tasks running, the
/// error goes at once ([`refuse_now`]).
fn refuse(stream: UnixStream, error: ErrorObject, refusals: &Arc<Semaphore>) {
    match Arc::clone(refusals).try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                refuse_after_first_line(stream, error).await;
                drop(permit);
            });
        }
        Err(_) => refuse_now(stream, error),
    }
}

/// Writes one error line (id null) to a connection refused, without waiting, and closes it.
fn refuse_now(stream: UnixStream, error: ErrorObject) {
    let line = Reply::err(Id::Null, error).to_line();
    // The send buffer of a connection just accepted is empty: the short line fits at once.
    // A socket that cannot take it is closed all the same.
    if let Ok(mut s) = stream.into_std() {
        let _ = std::io::Write::write_all(&mut s, &line);
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

/// [`refuse`]'s task.
async fn refuse_after_first_line(mut stream: UnixStream, error: ErrorObject) {
    use tokio::time::timeout;
    let mut line = Vec::with_capacity(1024);
    let id = match timeout(REFUSAL_WAIT, first_line(&mut stream, &mut line)).await {
        Ok(Ok(())) => first_line_id(&line),
        Ok(Err(_)) | Err(_) => Id::Null,
    };
    // The line may hold a PIN.
    line.zeroize();
    let reply = Reply::err(id, error).to_line();
    let sent = timeout(REFUSAL_DRAIN, async {
        stream.write_all(&reply).await?;
        // Half-closed: the client reads the line, then the end.
        stream.shutdown().await
    })
    .await;
    if matches!(sent, Ok(Ok(()))) {
        let mut rest = (&mut stream).take(REFUSAL_DRAIN_BYTES);
        let _ = timeout(
            REFUSAL_DRAIN,
            tokio::io::copy(&mut rest, &mut tokio::io::sink()),
        )
        .await;
    }
}

/// Reads `stream` into `line` up to the first newline, the end, or [`MAX_LINE`] bytes and a
/// little more.
async fn first_line(stream: &mut UnixStream, line: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 1024];
    let read = loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break Ok(()),
            Ok(n) => {
                line.extend_from_slice(&chunk[..n]);
                if chunk[..n].contains(&b'\n') || line.len() > MAX_LINE {
                    break Ok(());
                }
            }
            Err(e) => break Err(e),
        }
    };
    chunk.zeroize();
    read
}

/// The id of a refused connection's first line: null when the line is not a request object
/// whose `id` can be echoed (not JSON, `id` twice, of the wrong type, over the line limit).
fn first_line_id(line: &[u8]) -> Id {
    #[derive(serde::Deserialize)]
    struct OnlyId<'a> {
        #[serde(borrow, default)]
        id: Option<&'a RawValue>,
    }
    let line = match line.iter().position(|&b| b == b'\n') {
        Some(end) => &line[..end],
        None if line.len() > MAX_LINE => return Id::Null,
        None => line,
    };
    let Ok(text) = std::str::from_utf8(line) else {
        return Id::Null;
    };
    match serde_json::from_str::<OnlyId>(text.trim()) {
        Ok(OnlyId { id: Some(raw) }) if readable(raw).is_ok() => Id::of(raw).unwrap_or(Id::Null),
        _ => Id::Null,
    }
}

async fn serve_connection(
    stream: UnixStream,
    ctx: Context,
    queued: usize,
    idle: std::time::Duration,
    mut shutdown: Shutdown,
) {
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
    serve_lines(&mut reader, &ctx, &mut conn, &write, idle, &mut shutdown).await;
    drop(conn);
    let _ = writer.await;
}

/// Serves a connection's request lines, one at a time, until it closes, shutdown, or it is
/// idle: no whole request line within `idle` while subscribed to no events (a line trickled
/// slower than that counts as none). An idle connection gets an `IDLE_TIMEOUT` line (id null),
/// its writing half is closed and what it still sends is drained (as a refusal's), then it
/// closes; its slots are free for others. A subscribed connection is never idle.
async fn serve_lines(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    ctx: &Context,
    conn: &mut Conn,
    out: &tokio::sync::Mutex<tokio::net::unix::OwnedWriteHalf>,
    idle: std::time::Duration,
    shutdown: &mut Shutdown,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut *reader).take(MAX_LINE as u64 + 1);
        let subscribed = conn.subscription.is_some();
        let idle_for = async {
            if subscribed {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(idle).await;
        };
        let n = tokio::select! {
            biased;
            _ = shutdown.wait() => return,
            n = limited.read_until(b'\n', &mut line) => n,
            () = idle_for => {
                line.as_mut_slice().zeroize();
                close_idle(reader, out, idle).await;
                return;
            }
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
                    Id::Null,
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

/// Closes an idle connection: its `IDLE_TIMEOUT` line, then as a refusal's end.
async fn close_idle(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    out: &tokio::sync::Mutex<tokio::net::unix::OwnedWriteHalf>,
    idle: std::time::Duration,
) {
    use tokio::time::timeout;
    let secs = idle.as_secs();
    tracing::debug!(idle_secs = secs, "API connection closed: idle");
    let line = Reply::err(
        Id::Null,
        ErrorObject::new(
            api::IDLE_TIMEOUT,
            format!("no request for {secs} s and no event subscription (api.idle_timeout_secs): connection closed"),
            None,
        )
        .with("idle_timeout_secs", json!(secs)),
    )
    .to_line();
    let sent = timeout(REFUSAL_DRAIN, async {
        let mut w = out.lock().await;
        w.write_all(&line).await?;
        w.shutdown().await
    })
    .await;
    if matches!(sent, Ok(Ok(()))) {
        let mut rest = (&mut *reader).take(REFUSAL_DRAIN_BYTES);
        let _ = timeout(
            REFUSAL_DRAIN,
            tokio::io::copy(&mut rest, &mut tokio::io::sink()),
        )
        .await;
    }
}

/// Answers one line; `None` for a notification (a request without an `id` member) and for
/// an empty line.
pub async fn handle_line(ctx: &Context, conn: &mut Conn, line: &mut [u8]) -> Option<Reply> {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t.trim(),
        Err(e) => {
            return Some(Reply::err(
                Id::Null,
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
    let mut found = request::Found::default();
    let (raw_id, mut members) = match request::parse(text, &mut found) {
        Ok(request::Parsed::Object { id, members }) => (id, members),
        Ok(request::Parsed::NotObject) => {
            return Some(Reply::err(
                Id::Null,
                ErrorObject::new(
                    api::INVALID_REQUEST,
                    "a request is one JSON object per line (batches are not supported)",
                    None,
                ),
            ))
        }
        Err(e) => {
            return Some(Reply::err(
                Id::Null,
                ErrorObject::new(api::PARSE_ERROR, format!("invalid JSON: {e}"), None),
            ))
        }
    };
    let duplicate = found.duplicate();
    let envelope = envelope(raw_id, found.id_twice, &mut members, duplicate.as_ref());
    // What is left of the object (and all of it when refused) may hold a PIN.
    scrub_members(&mut members);
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
    if let Some(at) = duplicate.as_ref().and_then(request::Duplicate::in_params) {
        // Not "the last one wins": the request is refused, and a notification is not run.
        let mut refused = params;
        if let Some(p) = refused.as_mut() {
            scrub(p);
        }
        let field = shown(&at);
        return id.map(|id| {
            Reply::err(
                id,
                ErrorObject::new(
                    api::INVALID_PARAMS,
                    format!("invalid params: {field}: a member given twice in its object"),
                    Some(&field),
                ),
            )
        });
    }
    // Values longer than a message echoes, kept (rarely) to cut them out of the message.
    let long = if found.longest > SHOWN {
        let mut long = Vec::new();
        long_strings(params.as_ref(), &mut long);
        long
    } else {
        Vec::new()
    };
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
        Err(ApiError(mut e)) => {
            if !long.is_empty() {
                e.message = cut_echoes(&e.message, &long);
            }
            Reply::err(id, e)
        }
    })
}

/// The strings of `v` longer than [`SHOWN`] bytes (those a message may not echo whole),
/// wiped when dropped.
fn long_strings(v: Option<&Value>, out: &mut Vec<zeroize::Zeroizing<String>>) {
    match v {
        Some(Value::String(s)) if s.len() > SHOWN => out.push(zeroize::Zeroizing::new(s.clone())),
        Some(Value::Array(a)) => a.iter().for_each(|v| long_strings(Some(v), out)),
        Some(Value::Object(o)) => o.values().for_each(|v| long_strings(Some(v), out)),
        _ => {}
    }
}

/// `message` with every value of `long` it echoes cut to [`SHOWN`] characters ([`shown`]):
/// the refusals made deeper (the sheet's checks, the pricing rules) name the value whole.
/// A run of more than [`SHOWN`] characters without a space left after that (a value echoed
/// changed, say escaped), and not cut already, is cut the same way.
fn cut_echoes(message: &str, long: &[zeroize::Zeroizing<String>]) -> String {
    if message.chars().nth(SHOWN).is_none() {
        return message.to_string();
    }
    let mut out = message.to_string();
    for value in long {
        if value.chars().nth(SHOWN).is_some() && out.contains(value.as_str()) {
            out = out.replace(value.as_str(), &shown(value));
        }
    }
    let mut cut = String::with_capacity(out.len());
    for (i, word) in out.split(' ').enumerate() {
        if i > 0 {
            cut.push(' ');
        }
        // A word holding `…` holds a value cut already.
        if word.contains('…') {
            cut.push_str(word);
        } else {
            cut.push_str(&shown(word));
        }
    }
    cut
}

/// Wipes every string of a request's members (a PIN must not linger in memory).
fn scrub_members(members: &mut Map<String, Value>) {
    members.values_mut().for_each(scrub);
}

/// A request's envelope, checked.
struct Envelope {
    /// The id to answer with; `None` for a notification (no `id` member).
    id: Option<Id>,
    /// The method named.
    method: String,
    /// The parameters (an object, an array, or none).
    params: Option<Value>,
}

/// Takes the envelope out of a request object: `id` (optional) a string, a number or null and
/// given once, no member given twice outside `params`, `jsonrpc` `"2.0"`, `method` a string,
/// `params` (optional) an object or an array. A refusal is the `INVALID_REQUEST` reply, with
/// the request's id when it could be read.
fn envelope(
    raw_id: Option<&RawValue>,
    id_twice: bool,
    obj: &mut Map<String, Value>,
    duplicate: Option<&request::Duplicate>,
) -> Result<Envelope, Box<Reply>> {
    let refuse = |id: Id, message: &str, field: &str| {
        Box::new(Reply::err(
            id,
            ErrorObject::new(api::INVALID_REQUEST, message, Some(field)),
        ))
    };
    if id_twice {
        return Err(refuse(
            Id::Null,
            "id is given twice: each member of a request once",
            "id",
        ));
    }
    let id = match raw_id.map(Id::of) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => {
            return Err(refuse(
                Id::Null,
                "id must be a string, a number or null",
                "id",
            ))
        }
    };
    let reply_id = id.clone().unwrap_or(Id::Null);
    if let Some(at) = duplicate.and_then(request::Duplicate::outside_params) {
        let field = shown(&at);
        return Err(refuse(
            reply_id,
            &format!("{field} is given twice: each member of a request once"),
            &field,
        ));
    }
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

/// The request line's parse: serde_json's `Value`, but a member given twice in an object is
/// found (and its path kept) instead of the last one silently winning, and the `id` is kept as
/// the client wrote it. One pass over the line, no allocation beyond those of the `Value`.
mod request {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::map::Entry;
    use serde_json::value::RawValue;
    use serde_json::{Map, Number, Value};

    /// One step of a path.
    enum Step {
        Member(String),
        Index(usize),
    }

    /// What the parse noticed beside the values.
    #[derive(Default)]
    pub(super) struct Found {
        /// The first member given twice (but `id`): its path, innermost step first.
        duplicate: Option<Vec<Step>>,
        /// The request's `id` is given twice: whichever member came twice first, the id to
        /// answer with is unknown.
        pub id_twice: bool,
        /// The longest string value, in bytes.
        pub longest: usize,
    }

    impl Found {
        fn twice(&mut self, name: &str) {
            if self.duplicate.is_none() {
                self.duplicate = Some(vec![Step::Member(name.to_string())]);
            }
        }

        /// The path of the member given twice, outermost first.
        pub fn duplicate(&self) -> Option<Duplicate> {
            let steps = self.duplicate.as_ref()?;
            Some(Duplicate(
                steps
                    .iter()
                    .rev()
                    .map(|s| match s {
                        Step::Member(m) => Ok(m.clone()),
                        Step::Index(i) => Err(*i),
                    })
                    .collect(),
            ))
        }
    }

    /// Where a member is given twice: the members and indexes from the request object down.
    pub(super) struct Duplicate(Vec<Result<String, usize>>);

    impl Duplicate {
        /// Its path (`method`, `x.y`) when it is not inside `params`.
        pub fn outside_params(&self) -> Option<String> {
            match self.0.as_slice() {
                [Ok(m), _, ..] if m == "params" => None,
                steps => Some(path(steps)),
            }
        }

        /// Its path below `params` (`acts[1].code`; `params` for positional parameters).
        pub fn in_params(&self) -> Option<String> {
            match self.0.as_slice() {
                [Ok(m), Ok(_), ..] if m == "params" => Some(path(&self.0[1..])),
                [Ok(m), Err(_), ..] if m == "params" => Some("params".to_string()),
                _ => None,
            }
        }
    }

    fn path(steps: &[Result<String, usize>]) -> String {
        let mut out = String::new();
        for (n, step) in steps.iter().enumerate() {
            match step {
                // A member named "" is shown as `""`: a field is never an empty name.
                Ok(m) => {
                    if n > 0 {
                        out.push('.');
                    }
                    out.push_str(if m.is_empty() { "\"\"" } else { m });
                }
                Err(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// A request line parsed.
    pub(super) enum Parsed<'a> {
        /// Not an object (a batch, a string …).
        NotObject,
        /// An object: its `id` as written (the first one, if given twice) and its other members.
        Object {
            id: Option<&'a RawValue>,
            members: Map<String, Value>,
        },
    }

    /// Parses one request line, noting in `found` what it sees.
    pub(super) fn parse<'a>(
        text: &'a str,
        found: &mut Found,
    ) -> Result<Parsed<'a>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed = Top { found }.deserialize(&mut de)?;
        de.end()?;
        Ok(parsed)
    }

    struct Top<'f> {
        found: &'f mut Found,
    }

    impl<'de> DeserializeSeed<'de> for Top<'_> {
        type Value = Parsed<'de>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Top<'_> {
        type Value = Parsed<'de>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON-RPC request object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let found = self.found;
            let mut id = None;
            let mut members = Map::new();
            while let Some(name) = map.next_key::<String>()? {
                if name == "id" {
                    let raw: &'de RawValue = map.next_value()?;
                    // Only scanned: read as serde_json reads any other value.
                    super::readable(raw).map_err(|e| {
                        // Its own position in the id is no help: the line's comes after.
                        let why = e.to_string();
                        let why = why.split(" at line ").next().unwrap_or_default();
                        serde::de::Error::custom(format_args!("id: {why}"))
                    })?;
                    if id.is_some() {
                        found.id_twice = true;
                    } else {
                        id = Some(raw);
                    }
                    continue;
                }
                member(&mut map, &mut members, name, found)?;
            }
            Ok(Parsed::Object { id, members })
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            let mut v = Any { found: self.found }.visit_seq(seq)?;
            super::scrub(&mut v);
            Ok(Parsed::NotObject)
        }

        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Parsed::NotObject)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Parsed::NotObject)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Parsed::NotObject)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Parsed::NotObject)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Parsed::NotObject)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Parsed::NotObject)
        }
    }

    /// Reads one member's value into `members`; a name already there is noted, its second
    /// value wiped and dropped.
    fn member<'de, A: MapAccess<'de>>(
        map: &mut A,
        members: &mut Map<String, Value>,
        name: String,
        found: &mut Found,
    ) -> Result<(), A::Error> {
        match members.entry(name) {
            Entry::Vacant(slot) => {
                let before = found.duplicate.is_some();
                let value = map.next_value_seed(Any { found: &mut *found })?;
                if let (false, Some(path)) = (before, found.duplicate.as_mut()) {
                    path.push(Step::Member(slot.key().clone()));
                }
                slot.insert(value);
            }
            Entry::Occupied(first) => {
                found.twice(first.key());
                let mut second = map.next_value_seed(Any { found: &mut *found })?;
                super::scrub(&mut second);
            }
        }
        Ok(())
    }

    /// Any JSON value, as serde_json's `Value` reads it.
    struct Any<'f> {
        found: &'f mut Found,
    }

    impl<'de> DeserializeSeed<'de> for Any<'_> {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Any<'_> {
        type Value = Value;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
            Ok(Value::Bool(b))
        }
        fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
            Ok(Value::Number(n.into()))
        }
        fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
            Ok(Value::Number(n.into()))
        }
        fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
            Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, s: &str) -> Result<Value, E> {
            self.found.longest = self.found.longest.max(s.len());
            Ok(Value::String(s.to_owned()))
        }
        fn visit_string<E>(self, s: String) -> Result<Value, E> {
            self.found.longest = self.found.longest.max(s.len());
            Ok(Value::String(s))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let found = self.found;
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            loop {
                let before = found.duplicate.is_some();
                let Some(item) = seq.next_element_seed(Any { found: &mut *found })? else {
                    break;
                };
                if let (false, Some(path)) = (before, found.duplicate.as_mut()) {
                    path.push(Step::Index(items.len()));
                }
                items.push(item);
            }
            Ok(Value::Array(items))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let found = self.found;
            let mut members = Map::new();
            while let Some(name) = map.next_key::<String>()? {
                member(&mut map, &mut members, name, found)?;
            }
            Ok(Value::Object(members))
        }
    }
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
        } else if let Some(integer) = integer_expected(&reason) {
            integer
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

/// The reason given for a number with a fraction or an exponent (`1500.0`, `1500.5`, `1e3`)
/// or beyond 2^64 where an integer goes: serde reads such a number as a double, and says
/// `invalid type: floating point `1500.0`, expected u64`. fsed refuses it rather than
/// round it: a double cannot tell `1500.0000000000000001` from `1500`.
fn integer_expected(reason: &str) -> Option<String> {
    let rest = reason.strip_prefix("invalid type: floating point `")?;
    let (number, expected) = rest.split_once("`, expected ")?;
    let integer = [
        "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize",
    ];
    let range = expected.strip_prefix("an integer ").unwrap_or(expected);
    integer.contains(&range).then(|| {
        format!(
            "an integer is expected ({range}), written without a fraction or an exponent: got {}",
            shown(number)
        )
    })
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

/// `queue.backup`: the database copied online to `path` (absolute, in an existing directory,
/// not one of the database's own files), checked, mode 0600, put in place atomically.
async fn queue_backup(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct BackupParams {
        path: String,
    }
    let BackupParams { path } = params(p)?;
    let dest = std::path::PathBuf::from(&path);
    if !dest.is_absolute() || dest.file_name().is_none() {
        return Err(ApiError::invalid(
            "path",
            "path: an absolute file path is needed",
        ));
    }
    let dir = dest.parent().unwrap_or(std::path::Path::new("/"));
    if !dir.is_dir() {
        return Err(ApiError::invalid(
            "path",
            format!("path: the directory {} does not exist", dir.display()),
        ));
    }
    let db = ctx.store.path();
    let own = |f: &std::path::Path| {
        let [wal, shm] = crate::mark::companions(db);
        let mut lock = db.as_os_str().to_os_string();
        lock.push(".lock");
        [
            db.to_path_buf(),
            wal,
            shm,
            crate::mark::mark_path(db),
            lock.into(),
        ]
        .iter()
        .any(|o| same_file(o, f))
    };
    if own(&dest) {
        return Err(ApiError::invalid(
            "path",
            "path: one of the database's own files; choose another",
        ));
    }
    let made = ctx.store.backup_to(dest).await?;
    Ok(json!({
        "path": path,
        "bytes": made.bytes,
        "integrity": "ok",
        "sheets": made.stats.sheets,
        "lots": made.stats.lots,
        "last_event": made.high_water.last_event,
        "practitioners": made.high_water.practitioners.iter().map(|(pid, c)| json!({
            "practitioner_id": pid,
            "sheet_numbers_reserved": c.next_sheet.saturating_sub(1),
            "last_sheet": c.last_sheet,
            "lots_made": c.next_lot.saturating_sub(1),
        })).collect::<Vec<_>>(),
    }))
}

/// Whether `a` and `b` name the same file: the same path once their directories are resolved.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    let resolved = |p: &std::path::Path| {
        let dir = p.parent().and_then(|d| std::fs::canonicalize(d).ok());
        dir.zip(p.file_name()).map(|(d, n)| d.join(n))
    };
    a == b || matches!((resolved(a), resolved(b)), (Some(x), Some(y)) if x == y)
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
                .call(move |q| q.list_sheets_checked(state, limit.min(1000), after_id))
                .await?;
            // A damaged row keeps its place, named by its id, and the page goes on.
            to_value(
                rows.iter()
                    .map(|r| match r {
                        Ok(r) => json!({ "id": r.id, "number": r.number, "state": r.state.as_str(), "lot_id": r.lot_id, "destination": r.destination, "reason": r.reason }),
                        Err(d) => damaged_entry(d),
                    })
                    .collect::<Vec<_>>(),
            )
        }
        "lots.list" => {
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
            let live = ctx.live.get();
            let cutoff = crate::batcher::alarm_cutoff(live.deadline_alarm_days);
            let sent_before = fse_queue::stamp_ago(live.arl_timeout);
            let (sheets, lots) = ctx
                .store
                .call(move |q| {
                    Ok((
                        q.deadline_alarms(&cutoff)?,
                        q.arl_alarms(&sent_before, live.arl_max_resends)?,
                    ))
                })
                .await?;
            to_value(alarms(sheets, lots))
        }
        "returns.list" => returns_list(ctx, p).await,
        "queue.stats" => {
            no_params(p)?;
            let live = ctx.live.get();
            let sent_before = fse_queue::stamp_ago(live.arl_timeout);
            let (stats, resends) = ctx
                .store
                .call(move |q| {
                    Ok((
                        q.stats()?,
                        q.resend_stats(&sent_before, live.arl_max_resends)?,
                    ))
                })
                .await?;
            to_value(QueueStats { stats, resends })
        }
        "system.doctor" => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct P {
                #[serde(default)]
                thorough: bool,
            }
            let P { thorough } = params(p)?;
            to_value(crate::doctor::run(ctx, &ctx.doctor, thorough).await)
        }
        "store.verify" => {
            no_params(p)?;
            to_value(ctx.store.read(|q| q.verify()).await?)
        }
        "queue.backup" => queue_backup(ctx, p).await,
        // `handle_line` lets only the names of `METHODS` through; a test calls each of them.
        other => Err(ApiError::new(
            api::INTERNAL_ERROR,
            format!("method {other} is listed but not served"),
            Some("method"),
        )),
    }
}

/// `queue.stats`: the counts per state and the resends of lots whose ARL did not come.
#[derive(serde::Serialize)]
struct QueueStats {
    #[serde(flatten)]
    stats: fse_queue::Stats,
    resends: fse_queue::ResendStats,
}

/// One alarm of `queue.alarms`, told apart by its `kind`.
#[derive(serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Alarm {
    /// A sheet not sent near or past its sending deadline.
    Deadline(fse_queue::DeadlineAlarm),
    /// A lot sent whose ARL has not come in time.
    ArlMissing(fse_queue::ArlAlarm),
}

/// The alarms of `queue.alarms`: the sheets near their deadline, then the lots without an ARL.
fn alarms(sheets: Vec<fse_queue::DeadlineAlarm>, lots: Vec<fse_queue::ArlAlarm>) -> Vec<Alarm> {
    sheets
        .into_iter()
        .map(Alarm::Deadline)
        .chain(lots.into_iter().map(Alarm::ArlMissing))
        .collect()
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

/// A damaged row in a listing, in its place: its id (a number for a sheet, as the sound
/// entries have) and why it is not served.
fn damaged_entry(d: &fse_queue::DamagedRow) -> Value {
    let id = match d.id.parse::<i64>() {
        Ok(n) if d.kind == "sheet" => json!(n),
        _ => json!(d.id),
    };
    json!({ "id": id, "damaged": d.reason })
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
                trust_configured: false,
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
        // No trust store here: every return would be refused, which the doctor says.
        assert_eq!(status("returns"), Some(json!("warning")), "{r}");
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

    /// The reply line to `line`, as text (to see the id exactly as written).
    async fn ask_text(ctx: &Context, line: &str) -> String {
        let mut bytes = line.as_bytes().to_vec();
        let reply = handle_line(ctx, &mut Conn::default(), &mut bytes)
            .await
            .unwrap();
        String::from_utf8(reply.to_line()).unwrap()
    }

    #[tokio::test]
    async fn a_member_given_twice_is_refused_by_name_not_taken_last() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        let refused = |r: &Value, code: i64, field: &str| {
            assert_eq!(r["error"]["code"], json!(code), "{r}");
            assert_eq!(r["error"]["data"]["field"], json!(field), "{r}");
            assert!(
                r["error"]["message"].as_str().unwrap().contains("twice"),
                "{r}"
            );
        };
        // Inside the parameters: INVALID_PARAMS naming the member by its path, with the id.
        for (params, field) in [
            (r#"{"acts":[{"code":"G"}],"acts":[{"code":"C"}]}"#, "acts"),
            (r#"{"act":{"code":"G","code":"C"}}"#, "act.code"),
            (
                r#"{"acts":[{"code":"G"},{"code":"G","quantity":1,"quantity":2}]}"#,
                "acts[1].quantity",
            ),
            (
                r#"{"act":{"code":"G","prescriber":{"date":"20260101","date":"20260102"}}}"#,
                "act.prescriber.date",
            ),
            // The first member given twice is named, even when a later one is too.
            (
                r#"{"ald":true,"ald":false,"act":{"code":"G","code":"C"}}"#,
                "ald",
            ),
            // A member named "" is named `""`, never by an empty field.
            (r#"{"act":{"":1,"":2}}"#, r#"act."""#),
        ] {
            let line =
                format!(r#"{{"jsonrpc":"2.0","id":"d","method":"fse.create","params":{params}}}"#);
            let r = ask(&ctx, &line).await;
            refused(&r, api::INVALID_PARAMS, field);
            assert_eq!(r["id"], json!("d"), "{r}");
        }
        // Positional parameters with a member twice: the parameters at fault.
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":1,"method":"fse.get","params":[{"id":1,"id":2}]}"#,
        )
        .await;
        refused(&r, api::INVALID_PARAMS, "params");
        // In the envelope: INVALID_REQUEST naming the member, with the id when it is readable.
        for (line, field, id) in [
            (
                r#"{"":7,"jsonrpc":"2.0","id":3,"method":"system.version","":7}"#,
                r#""""#,
                json!(3),
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"method":"system.version","method":"cards.list"}"#,
                "method",
                json!(2),
            ),
            (
                r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":3,"method":"system.version"}"#,
                "jsonrpc",
                json!(3),
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"fse.get","params":{"id":1},"params":{"id":2}}"#,
                "params",
                json!(4),
            ),
            (
                r#"{"jsonrpc":"2.0","id":5,"method":"system.version","x":{"y":1,"y":1}}"#,
                "x.y",
                json!(5),
            ),
            (
                r#"{"jsonrpc":"2.0","id":6,"id":7,"method":"system.version"}"#,
                "id",
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","id":6,"id":6,"method":"system.version"}"#,
                "id",
                Value::Null,
            ),
            // The id given twice decides, even after another member given twice.
            (
                r#"{"jsonrpc":"2.0","id":6,"method":"fse.list","params":{"a":1,"a":2},"id":7}"#,
                "id",
                Value::Null,
            ),
        ] {
            let r = ask(&ctx, line).await;
            refused(&r, api::INVALID_REQUEST, field);
            assert_eq!(r["id"], id, "{line}: {r}");
        }
        // A name of 5,000 characters given twice is named cut.
        let long = "n".repeat(5_000);
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":8,"method":"fse.list","params":{{"{long}":1,"{long}":2}}}}"#
        );
        let r = ask(&ctx, &line).await;
        assert_eq!(r["error"]["code"], json!(api::INVALID_PARAMS), "{r}");
        let field = r["error"]["data"]["field"].as_str().unwrap();
        // 200 characters of the name, then the ellipsis.
        assert_eq!(field.chars().count(), 201, "{field}");
        assert!(r["error"]["message"].as_str().unwrap().chars().count() < 300);
        // A notification with a member twice in its parameters is not run, and not answered.
        let mut note =
            br#"{"jsonrpc":"2.0","method":"lots.close","params":{"practitioner_id":"a","practitioner_id":"b"}}"#
                .to_vec();
        assert!(handle_line(&ctx, &mut Conn::default(), &mut note)
            .await
            .is_none());
        assert!(!ctx.close_now.load(Ordering::SeqCst), "lots.close ran");
        // The same names in different objects are no duplicate.
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":9,"method":"fse.list","params":{"limit":1,"after_id":0}}"#,
        )
        .await;
        assert!(r["result"].is_array(), "{r}");
    }

    #[tokio::test]
    async fn the_examples_of_api_md_for_these_refusals_are_what_fsed_answers() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        let md = include_str!("../API.md");
        for (request, reply_id) in [
            (
                r#"{"jsonrpc":"2.0","id":9,"method":"fse.create","params":{"act":{"code":"G","code":"C"}}}"#,
                9,
            ),
            (
                r#"{"jsonrpc":"2.0","id":10,"method":"fse.create","params":{"act":{"code":"G","excess_cents":1500.0}}}"#,
                10,
            ),
            (
                r#"{"jsonrpc":"2.0","id":11,"method":"system.version","method":"fse.get"}"#,
                11,
            ),
        ] {
            let reply = ask_text(&ctx, request).await;
            assert!(
                md.contains(reply.trim_end()),
                "API.md lacks fsed's reply {reply} (id {reply_id})"
            );
        }
    }

    #[tokio::test]
    async fn a_numeric_id_comes_back_exactly_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        for id in [
            "0",
            "-0",
            "7",
            // 2^53 + 1: a double would make it 9007199254740992.
            "9007199254740993",
            // u64::MAX, i64::MIN.
            "18446744073709551615",
            "-9223372036854775808",
            // Beyond 64 bits.
            "123456789012345678901234567890",
            "-123456789012345678901234567890",
            "1.5",
            "1.50",
            "1e2",
            "1E+2",
            "1e-400",
            "1.7976931348623157e308",
            r#""a-1""#,
            r#""\u00e9\"""#,
        ] {
            let reply = ask_text(
                &ctx,
                &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"system.version"}}"#),
            )
            .await;
            let expected = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"#);
            assert!(reply.starts_with(&expected), "{id}: {reply}");
            // The line is JSON all the same.
            let _: Value = serde_json::from_str(&reply).unwrap();
        }
        // An error reply carries it the same way.
        let reply = ask_text(
            &ctx,
            r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"no.such"}"#,
        )
        .await;
        assert!(
            reply.starts_with(r#"{"jsonrpc":"2.0","id":18446744073709551615,"error":"#),
            "{reply}"
        );
        // Beyond a double's range the line is not JSON fsed reads, as anywhere in a request.
        for id in ["1e400", "-1e400"] {
            let r = ask(
                &ctx,
                &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"system.version"}}"#),
            )
            .await;
            assert_eq!(r["error"]["code"], json!(api::PARSE_ERROR), "{id}: {r}");
            assert_eq!(r["id"], Value::Null, "{r}");
        }
        // What serde_json cannot read as a value is a parse error in the id as anywhere: a
        // lone surrogate, nesting past its limit (the same depth as in the whole line).
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":"\ud800","method":"system.version"}"#,
        )
        .await;
        assert_eq!(r["error"]["code"], json!(api::PARSE_ERROR), "{r}");
        for depth in 120..135 {
            let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            let line = format!(r#"{{"jsonrpc":"2.0","id":{nested},"method":"fse.get"}}"#);
            let readable = serde_json::from_str::<Value>(&line).is_ok();
            let r = ask(&ctx, &line).await;
            let code = if readable {
                api::INVALID_REQUEST
            } else {
                api::PARSE_ERROR
            };
            assert_eq!(r["error"]["code"], json!(code), "depth {depth}: {r}");
        }
        for id in ["true", "[1]", r#"{"a":1}"#] {
            let r = ask(
                &ctx,
                &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"system.version"}}"#),
            )
            .await;
            assert_eq!(r["error"]["data"]["field"], json!("id"), "{id}: {r}");
            assert_eq!(r["id"], Value::Null, "{r}");
        }
    }

    #[tokio::test]
    async fn an_integer_written_with_a_fraction_or_an_exponent_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        for (params, field) in [
            (
                r#"{"act":{"code":"G","excess_cents":1500.0}}"#,
                "act.excess_cents",
            ),
            (
                r#"{"act":{"code":"G","excess_cents":1500.5}}"#,
                "act.excess_cents",
            ),
            (
                r#"{"act":{"code":"G","excess_cents":1e3}}"#,
                "act.excess_cents",
            ),
            (
                r#"{"act":{"code":"G","coefficient":100.0}}"#,
                "act.coefficient",
            ),
            (r#"{"act":{"code":"G"},"beneficiary":0.0}"#, "beneficiary"),
            (
                r#"{"act":{"code":"G"},"expected":{"total_cents":3000.0}}"#,
                "expected.total_cents",
            ),
            // 2^64: an integer, but none a u64 holds.
            (
                r#"{"act":{"code":"G","excess_cents":18446744073709551616}}"#,
                "act.excess_cents",
            ),
        ] {
            let line =
                format!(r#"{{"jsonrpc":"2.0","id":1,"method":"fse.create","params":{params}}}"#);
            let r = ask(&ctx, &line).await;
            assert_eq!(
                r["error"]["code"],
                json!(api::INVALID_PARAMS),
                "{params}: {r}"
            );
            assert_eq!(r["error"]["data"]["field"], json!(field), "{params}: {r}");
            let message = r["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("an integer is expected")
                    && message.contains("without a fraction or an exponent"),
                "{message}"
            );
        }
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":1,"method":"fse.get","params":{"id":1.0}}"#,
        )
        .await;
        assert_eq!(r["error"]["data"]["field"], json!("id"), "{r}");
        // The integer itself goes through (to the cards, absent here).
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":1,"method":"fse.create","params":{"act":{"code":"G","excess_cents":1500}}}"#,
        )
        .await;
        assert_eq!(r["error"]["data"]["name"], json!("CARD_ABSENT"), "{r}");
    }

    #[tokio::test]
    async fn a_long_value_is_echoed_cut_to_200_characters() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        // Of a message, the longest run of one character.
        let run = |m: &str, c: char| {
            m.split(|x| x != c)
                .map(|r| r.chars().count())
                .max()
                .unwrap_or(0)
        };
        let long = "Z".repeat(5_000);
        let lines = [
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{long}"}}"#),
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"fse.{long}"}}"#),
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"fse.list","params":{{"state":"{long}"}}}}"#
            ),
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"fse.list","params":{{"{long}":1}}}}"#),
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"lots.get","params":{{"lot_id":"{long}"}}}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"events.subscribe","params":{{"events":["{long}"]}}}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"fse.create","params":{{"act":{{"code":5,"{long}":1}}}}}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"fse.cancel","params":{{"id":1,"reason":"{long}"}}}}"#
            ),
        ];
        for line in &lines {
            let r = ask(&ctx, line).await;
            let message = r["error"]["message"].as_str().unwrap();
            assert!(run(message, 'Z') <= 200, "{message}");
            if run(message, 'Z') == 200 {
                assert!(
                    message.contains(&format!("{}…", "Z".repeat(200))),
                    "{message}"
                );
            }
            assert!(message.chars().count() < 600, "{message}");
        }
        // The refusals made deeper name the value whole: the reply's message cuts it, with
        // the ellipsis, spaces or not.
        let code = "Z".repeat(5_000);
        let made = format!("unknown act {code} on 2026-11-30");
        let cut = cut_echoes(&made, &[zeroize::Zeroizing::new(code.clone())]);
        assert_eq!(
            cut,
            format!("unknown act {}… on 2026-11-30", "Z".repeat(200))
        );
        let spaced = "A B ".repeat(1_000);
        let made = format!("act 0: {spaced}is not billable");
        let cut = cut_echoes(&made, &[zeroize::Zeroizing::new(spaced.clone())]);
        // The first 200 characters of the value, the ellipsis, and the text after it.
        assert_eq!(
            cut,
            format!("act 0: {}…is not billable", &spaced[..200]),
            "{cut}"
        );
        // A value its check cut already (quoted) is not cut again.
        let quoted = format!("unknown state {:?}", shown(&code));
        assert_eq!(
            cut_echoes(&quoted, &[zeroize::Zeroizing::new(code.clone())]),
            quoted
        );
        // A message already short enough is left alone.
        assert_eq!(cut_echoes("no sheet 9", &[]), "no sheet 9");
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
        lines_until_closed(&mut stream).await
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
            max_connections_per_uid: 4,
            idle_timeout: std::time::Duration::from_secs(300),
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
            max_connections_per_uid: 2,
            idle_timeout: std::time::Duration::from_secs(300),
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

    /// Asks `system.version` until one connection is served (a slot freed is given back once
    /// its connection's task ends): whether one was, within 5 s.
    async fn served_again(path: &std::path::Path) -> bool {
        let end = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while tokio::time::Instant::now() < end {
            let mut s = BufReader::new(UnixStream::connect(path).await.unwrap());
            if version(&mut s).await.get("result").is_some() {
                return true;
            }
            tokio::task::yield_now().await;
        }
        false
    }

    #[tokio::test]
    async fn a_user_past_its_own_limit_is_refused_while_the_server_has_room() {
        let dir = tempfile::tempdir().unwrap();
        let me = crate::access::own_uid().unwrap();
        let settings = Settings {
            max_connections_per_uid: 2,
            ..limited(8)
        };
        let (path, trigger, server) = serving(&dir, "s.sock", settings);
        let mut first = BufReader::new(UnixStream::connect(&path).await.unwrap());
        let mut second = BufReader::new(UnixStream::connect(&path).await.unwrap());
        assert_eq!(version(&mut first).await["id"], json!(7));
        assert_eq!(version(&mut second).await["id"], json!(7));
        // 2 of 8 connections are served: the third of the same user is refused by its own
        // limit, not the server's.
        let lines = refusal(&path).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        let e = &lines[0]["error"];
        assert_eq!(e["code"], json!(api::TOO_MANY_CONNECTIONS_FOR_PEER), "{e}");
        assert_eq!(
            e["data"]["name"],
            json!("TOO_MANY_CONNECTIONS_FOR_PEER"),
            "{e}"
        );
        assert_eq!(e["data"]["limit"], json!(2), "{e}");
        assert_eq!(e["data"]["uid"], json!(me), "{e}");
        drop(first);
        assert!(
            served_again(&path).await,
            "a slot of the user freed is taken again"
        );
        assert_eq!(version(&mut second).await["result"]["api"], json!(1));
        trigger.fire();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_with_its_reason_unless_subscribed() {
        let dir = tempfile::tempdir().unwrap();
        let idle = std::time::Duration::from_millis(300);
        let settings = Settings {
            idle_timeout: idle,
            ..limited(2)
        };
        let (path, trigger, server) = serving(&dir, "s.sock", settings);
        let mut quiet = BufReader::new(UnixStream::connect(&path).await.unwrap());
        assert_eq!(version(&mut quiet).await["id"], json!(7));
        let last_request = tokio::time::Instant::now();
        let mut subscribed = BufReader::new(UnixStream::connect(&path).await.unwrap());
        subscribed
            .get_mut()
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"events.subscribe\"}\n")
            .await
            .unwrap();
        let mut reply = String::new();
        subscribed.read_line(&mut reply).await.unwrap();
        assert!(reply.contains("\"result\""), "{reply}");
        // Both slots are taken: a third is refused.
        let lines = refusal(&path).await;
        assert_eq!(lines[0]["error"]["code"], json!(api::TOO_MANY_CONNECTIONS));
        // The quiet one gets its reason, then the end, once idle.
        let lines = lines_until_closed(quiet.get_mut()).await;
        assert!(last_request.elapsed() >= idle, "closed before it was idle");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["id"], Value::Null);
        let e = &lines[0]["error"];
        assert_eq!(e["code"], json!(api::IDLE_TIMEOUT), "{e}");
        assert_eq!(e["data"]["name"], json!("IDLE_TIMEOUT"), "{e}");
        // 300 ms is 0 whole seconds.
        assert_eq!(e["data"]["idle_timeout_secs"], json!(0), "{e}");
        drop(quiet);
        // Its slot is free again; the subscribed one, as quiet as it, is still served.
        assert!(
            served_again(&path).await,
            "the idle connection's slot is taken again"
        );
        assert!(last_request.elapsed() >= idle);
        assert_eq!(version(&mut subscribed).await["result"]["api"], json!(1));
        trigger.fire();
        server.await.unwrap();
    }

    /// Settings that let only this process's user in, with `max_connections`.
    fn limited(max_connections: usize) -> Settings {
        Settings {
            max_connections,
            max_queued_replies: 4,
            max_connections_per_uid: max_connections,
            idle_timeout: std::time::Duration::from_secs(300),
            access: Access {
                users: [crate::access::own_uid().unwrap()].into(),
                groups: Default::default(),
            },
        }
    }

    /// Reads a refused connection to its end: its lines.
    async fn lines_until_closed(stream: &mut UnixStream) -> Vec<Value> {
        let mut all = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            stream.read_to_string(&mut all),
        )
        .await
        .expect("the refused connection is closed")
        .unwrap();
        all.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_refused_connection_gets_its_error_under_its_first_requests_id() {
        let dir = tempfile::tempdir().unwrap();
        let (path, trigger, server) = serving(&dir, "s.sock", limited(1));
        let mut served = BufReader::new(UnixStream::connect(&path).await.unwrap());
        assert_eq!(version(&mut served).await["id"], json!(7));
        for (request, id) in [
            (
                r#"{"jsonrpc":"2.0","id":"first","method":"system.version"}"#,
                r#""first""#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"queue.stats"}"#,
                "123456789012345678901234567890",
            ),
            // No readable id: null.
            (r#"{"jsonrpc":"2.0","method":"system.version"}"#, "null"),
            (r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}"#, "null"),
            ("not json", "null"),
        ] {
            let mut s = UnixStream::connect(&path).await.unwrap();
            s.write_all(format!("{request}\n").as_bytes())
                .await
                .unwrap();
            let mut all = String::new();
            s.read_to_string(&mut all).await.unwrap();
            assert!(
                all.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{id},"error":"#)),
                "{request}: {all}"
            );
            let lines: Vec<Value> = all
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines.len(), 1, "{all}");
            assert_eq!(
                lines[0]["error"]["code"],
                json!(api::TOO_MANY_CONNECTIONS),
                "{all}"
            );
        }
        trigger.fire();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_client_that_sends_nothing_still_gets_its_error_line() {
        let dir = tempfile::tempdir().unwrap();
        let (path, trigger, server) = serving(&dir, "s.sock", limited(1));
        let mut served = BufReader::new(UnixStream::connect(&path).await.unwrap());
        assert_eq!(version(&mut served).await["id"], json!(7));
        let mut silent = UnixStream::connect(&path).await.unwrap();
        let lines = lines_until_closed(&mut silent).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["id"], Value::Null);
        assert_eq!(lines[0]["error"]["code"], json!(api::TOO_MANY_CONNECTIONS));
        // More refused at once than refusal tasks: every one gets its line all the same.
        let mut many = Vec::new();
        for _ in 0..REFUSALS_AT_ONCE + 16 {
            many.push(UnixStream::connect(&path).await.unwrap());
        }
        for s in &mut many {
            let lines = lines_until_closed(s).await;
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert_eq!(lines[0]["error"]["code"], json!(api::TOO_MANY_CONNECTIONS));
        }
        // The served connection went on all along.
        assert_eq!(version(&mut served).await["result"]["name"], json!("fsed"));
        trigger.fire();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_client_that_writes_before_it_reads_gets_no_broken_pipe() {
        let dir = tempfile::tempdir().unwrap();
        let (path, trigger, server) = serving(&dir, "s.sock", limited(1));
        let mut served = BufReader::new(UnixStream::connect(&path).await.unwrap());
        assert_eq!(version(&mut served).await["id"], json!(7));
        for _ in 0..20 {
            let mut s = UnixStream::connect(&path).await.unwrap();
            // A request, then more lines pipelined behind it (8 KiB in all): every write
            // succeeds, then the error line is read.
            s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":41,\"method\":\"system.version\"}\n")
                .await
                .expect("the request is written");
            let more = format!("{}\n", "x".repeat(1023)).repeat(8);
            s.write_all(more.as_bytes())
                .await
                .expect("what follows is written");
            let lines = lines_until_closed(&mut s).await;
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert_eq!(lines[0]["id"], json!(41));
            assert_eq!(lines[0]["error"]["code"], json!(api::TOO_MANY_CONNECTIONS));
        }
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
