//! The socket server: the listener and its accept loop, each connection's peer credentials
//! checked against `[api]`'s allowlist, the connection limits (in all and per user), refused
//! connections answered with one error line, each connection's lines served one at a time,
//! its event notifications written beside its replies, and the idle timeout.

use std::sync::Arc;

use fse_formats::api::{self, ErrorObject};
use serde_json::json;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, Semaphore};
use zeroize::Zeroize;

use super::dispatch::handle_line;
use super::jsonrpc::{readable, Id, Reply, MAX_ATTACH_LINE, MAX_LINE};
use crate::access::Access;
use crate::caller::Caller;
use crate::config::ApiSection;
use crate::context::Context;
use crate::shutdown::Shutdown;

/// Bytes of waiting replies gathered into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// One client connection: where its lines go, and its event subscription.
#[derive(Default)]
pub struct Conn {
    pub(super) out: Option<mpsc::Sender<Vec<u8>>>,
    pub(super) subscription: Option<tokio::task::JoinHandle<()>>,
    /// The events this connection asked for (`None`: all); `lagged` always comes.
    pub(super) selection: crate::events::Selection,
    /// The client on this connection.
    pub caller: Caller,
    /// Ends the client's card leases and drops its waiting card jobs when the connection goes.
    pub(super) _cards: Option<crate::cards::ClientGuard>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(task) = self.subscription.take() {
            task.abort();
        }
    }
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
            serve_connection(stream, Caller::local(uid), ctx, queued, idle, sd).await;
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

/// Serves one accepted connection (a Unix socket, or a TLS stream from the network) for
/// `caller` until it closes, is idle, or shutdown.
pub async fn serve_connection<S>(
    stream: S,
    caller: Caller,
    ctx: Context,
    queued: usize,
    idle: std::time::Duration,
    mut shutdown: Shutdown,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
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
        _cards: Some(ctx.cards.guard(&caller)),
        caller,
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
async fn serve_lines<R, W>(
    reader: &mut BufReader<R>,
    ctx: &Context,
    conn: &mut Conn,
    out: &tokio::sync::Mutex<W>,
    idle: std::time::Duration,
    shutdown: &mut Shutdown,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
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
        let n = match n {
            // A document for fse.attach: read on, to its own bound.
            Ok(n)
                if line.len() > MAX_LINE
                    && line.last() != Some(&b'\n')
                    && super::jsonrpc::starts_attach(&line[..MAX_LINE]) =>
            {
                let mut more = (&mut *reader).take((MAX_ATTACH_LINE - line.len() + 1) as u64);
                match more.read_until(b'\n', &mut line).await {
                    Ok(m) if m > 0 => Ok(n + m),
                    other => other,
                }
            }
            other => other,
        };
        // Over the limit: more than MAX_LINE bytes before the newline (a line of exactly
        // MAX_LINE bytes and its newline is served).
        let long = line.len() - usize::from(line.last() == Some(&b'\n')) > MAX_LINE;
        let reply = match n {
            Ok(0) | Err(_) => return,
            Ok(_) if long && line.last() != Some(&b'\n') => {
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
                Some(too_long())
            }
            // A long line is served only as the fse.attach it started as.
            Ok(_) if long && !super::jsonrpc::top_method_is_attach(&line) => Some(too_long()),
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

/// The reply to a request line over the limit ([`MAX_LINE`]; [`MAX_ATTACH_LINE`] for
/// `fse.attach`).
fn too_long() -> Reply {
    Reply::err(
        Id::Null,
        ErrorObject::new(
            api::INVALID_REQUEST,
            format!("request line longer than {MAX_LINE} bytes: skipped"),
            None,
        )
        .with("limit", json!(MAX_LINE)),
    )
}

/// Closes an idle connection: its `IDLE_TIMEOUT` line, then as a refusal's end.
async fn close_idle<R, W>(
    reader: &mut BufReader<R>,
    out: &tokio::sync::Mutex<W>,
    idle: std::time::Duration,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
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

#[cfg(test)]
mod tests;
