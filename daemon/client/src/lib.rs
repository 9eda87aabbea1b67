//! `fsed_client`: the one client of fsed's JSON-RPC socket (`daemon/API.md`), blocking, over
//! a Unix stream: one JSON object a line each way.
//!
//! A [`Client`] makes calls ([`Client::call`]), sends requests ahead of their answers and
//! reads the answers later ([`Client::send`], [`Client::reply`]: pipelining), follows an
//! event subscription ([`Client::next_event`]), and, for tests of the protocol itself, writes
//! and reads raw lines ([`Client::write_raw`], [`Client::read_line`]). An error fsed answers
//! is a [`PeerError`] keeping its code, message and data.
//!
//! For callers that make many calls (the load generator), a fast path (`typed.rs`):
//! [`Client::call_typed`] and [`Client::call_json`] reuse the client's buffers from one call
//! to the next, read only the members of the result the caller's type has, and keep an error
//! as its JSON text.
//!
//! The parameters of a request may hold a PIN or a PUK: every string of them and the line
//! written are wiped once sent ([`scrub`]).
//!
//! The same client speaks to a remote fsed's network API over mutual TLS 1.3
//! ([`Client::connect_tls`], with an enrolled [`tls::Identity`]).
//!
//! It depends on neither the daemon nor the queue: `fsectl`, the simulator's demo and the
//! end-to-end tests use it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use zeroize::{Zeroize, Zeroizing};

pub mod tls;
mod typed;

/// The socket fsed listens on under systemd (`fsed.socket`).
pub const DEFAULT_SOCKET: &str = "/run/fsed/fsed.sock";

/// An error fsed answered: the JSON-RPC error object's members.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerError {
    /// The stable error code (`daemon/API.md`, "Errors").
    pub code: i64,
    /// The message, for people.
    pub message: String,
    /// The error's data (`field`, `reason`, limits…), when it has any.
    pub data: Option<Value>,
}

impl PeerError {
    /// Reads a JSON-RPC error object; `None` when it has no integer `code` or no string
    /// `message`.
    pub fn from_value(error: &Value) -> Option<PeerError> {
        Some(PeerError {
            code: error.get("code")?.as_i64()?,
            message: error.get("message")?.as_str()?.to_string(),
            data: error.get("data").cloned(),
        })
    }

    /// The request member the error is about (`data.field`), when it names one.
    pub fn field(&self) -> Option<&str> {
        self.data.as_ref()?.get("field")?.as_str()
    }
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why a call gave no result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be connected to; the message says what to do about it.
    #[error("{}: {source} ({})", path.display(), connect_hint(source))]
    Connect {
        /// The socket's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The network address could not be connected to.
    #[error("{address}: {source}")]
    ConnectTcp {
        /// The address (`host:port`).
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The identity could not be loaded or the TLS configuration built.
    #[error("{0}")]
    Tls(#[from] tls::Error),
    /// The TLS handshake with the remote fsed failed (its certificate is not of the
    /// identity's CA, ours was refused…).
    #[error("{address}: TLS handshake: {reason}")]
    Handshake {
        /// The address (`host:port`).
        address: String,
        /// Why.
        reason: String,
    },
    /// Writing or reading the socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The request could not be encoded as JSON.
    #[error("{0}")]
    Encode(serde_json::Error),
    /// fsed closed the connection before the answer.
    #[error("fsed closed the connection")]
    Closed,
    /// A line from fsed is not a JSON-RPC message this client reads.
    #[error("unreadable reply: {reason}")]
    Unreadable {
        /// What is wrong with it.
        reason: String,
    },
    /// fsed answered an error.
    #[error("{0}")]
    Peer(PeerError),
}

/// What to do when connecting failed with `e`.
fn connect_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "add this user to the group fsed, then log in again"
        }
        _ => "is fsed running? `systemctl status fsed`",
    }
}

/// Wipes every string of `v` (parameters that may hold a PIN or a PUK), in place.
pub fn scrub(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(scrub),
        Value::Object(o) => o.values_mut().for_each(scrub),
        _ => {}
    }
}

/// Waits until a stream has something to read (or is closed); see [`Client::wait_with`].
pub type WaitReadable = fn(&UnixStream) -> std::io::Result<()>;

/// What a client is connected over: fsed's Unix socket or its network API.
enum Transport {
    Unix(UnixStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Unix(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Unix(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Unix(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// The socket under a client, to set its timeouts ([`Client::stream`]).
pub enum Stream<'a> {
    /// fsed's Unix socket.
    Unix(&'a UnixStream),
    /// The TCP connection under the TLS session.
    Tcp(&'a TcpStream),
}

impl Stream<'_> {
    /// Sets the socket's read timeout (`None`: reads wait for ever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tcp(s) => s.set_read_timeout(timeout),
        }
    }

    /// Sets the socket's write timeout (`None`: writes wait for ever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(timeout),
            Stream::Tcp(s) => s.set_write_timeout(timeout),
        }
    }
}

/// The timeouts of a network connection ([`Client::connect_tls_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long connecting the TCP socket and the TLS handshake may take.
    pub connect: Duration,
    /// How long a read may wait (`None`: for ever).
    pub read: Option<Duration>,
}

impl Default for Timeouts {
    /// 10 s to connect and shake hands, reads unbounded (as on the Unix socket).
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(10),
            read: None,
        }
    }
}

/// A connection to fsed's socket or network API. Request ids count from 1 on each
/// connection.
pub struct Client {
    stream: BufReader<Transport>,
    next: u64,
    /// The line the fast path reads, its buffer kept from one answer to the next.
    line: Vec<u8>,
    /// The line the fast path sends (likewise).
    out: Vec<u8>,
    /// Called by the fast path before it reads with nothing buffered.
    wait: Option<WaitReadable>,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, Error> {
        let path = path.as_ref();
        UnixStream::connect(path)
            .map(Client::from_stream)
            .map_err(|source| Error::Connect {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Connects to the network API of the fsed at `address` (`host:port`) with mutual TLS
    /// 1.3 as `identity`, with the default [`Timeouts`].
    pub fn connect_tls(address: &str, identity: &tls::Identity) -> Result<Client, Error> {
        Client::connect_tls_with(address, identity, Timeouts::default())
    }

    /// [`Client::connect_tls`] with the given timeouts. The handshake is completed here: a
    /// server that is not of the identity's CA is refused before any request is sent. (A
    /// server refusing our certificate says so after the client's side of the handshake is
    /// done: the first read then fails.)
    pub fn connect_tls_with(
        address: &str,
        identity: &tls::Identity,
        timeouts: Timeouts,
    ) -> Result<Client, Error> {
        let config = tls::client_config(identity)?;
        let connect_error = |source| Error::ConnectTcp {
            address: address.to_string(),
            source,
        };
        let mut last = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the address resolves to nothing",
        );
        let mut tcp = None;
        for a in address.to_socket_addrs().map_err(connect_error)? {
            match TcpStream::connect_timeout(&a, timeouts.connect) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let Some(mut tcp) = tcp else {
            return Err(connect_error(last));
        };
        tcp.set_nodelay(true).map_err(connect_error)?;
        // The handshake is bounded by the connect timeout, later reads by the read timeout.
        tcp.set_read_timeout(Some(timeouts.connect))
            .map_err(connect_error)?;
        tcp.set_write_timeout(Some(timeouts.connect))
            .map_err(connect_error)?;
        let handshake_error = |reason: String| Error::Handshake {
            address: address.to_string(),
            reason,
        };
        let mut conn = rustls::ClientConnection::new(config, tls::server_name())
            .map_err(|e| handshake_error(e.to_string()))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)
                .map_err(|e| handshake_error(e.to_string()))?;
        }
        tcp.set_read_timeout(timeouts.read).map_err(connect_error)?;
        tcp.set_write_timeout(None).map_err(connect_error)?;
        Ok(Client::from_transport(Transport::Tls(Box::new(
            rustls::StreamOwned::new(conn, tcp),
        ))))
    }

    /// A client on a stream already connected.
    pub fn from_stream(stream: UnixStream) -> Client {
        Client::from_transport(Transport::Unix(stream))
    }

    fn from_transport(transport: Transport) -> Client {
        Client {
            stream: BufReader::new(transport),
            next: 0,
            // Room for a created sheet's answer and a request, from the first call on.
            line: Vec::with_capacity(4096),
            out: Vec::with_capacity(1024),
            wait: None,
        }
    }

    /// The socket under the client, to set its timeouts.
    pub fn stream(&self) -> Stream<'_> {
        match self.stream.get_ref() {
            Transport::Unix(s) => Stream::Unix(s),
            Transport::Tls(s) => Stream::Tcp(s.get_ref()),
        }
    }

    /// Whether the client speaks to a remote fsed over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream.get_ref(), Transport::Tls(_))
    }

    /// Sends one request and returns its id; its answer is read by [`Client::reply`], so
    /// several requests may be sent before their answers are read. The parameters' strings
    /// and the line written are wiped once sent.
    pub fn send(&mut self, method: &str, params: Value) -> Result<u64, Error> {
        self.next += 1;
        let mut request =
            json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params});
        let encoded = serde_json::to_vec(&request);
        scrub(&mut request);
        let mut line = Zeroizing::new(encoded.map_err(Error::Encode)?);
        line.push(b'\n');
        self.stream.get_mut().write_all(&line)?;
        self.stream.get_mut().flush()?;
        Ok(self.next)
    }

    /// Writes `bytes` as they are (no newline added), keeping the I/O error's kind.
    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.get_mut().write_all(bytes)?;
        self.stream.get_mut().flush()
    }

    /// Reads one line as text, newline included, appended to `line`; `Ok(0)` at the end.
    pub fn read_line(&mut self, line: &mut String) -> std::io::Result<usize> {
        self.stream.read_line(line)
    }

    /// The next message, parsed: an answer or a notification.
    pub fn read_message(&mut self) -> Result<Value, Error> {
        let mut line = String::new();
        if self.read_line(&mut line)? == 0 {
            return Err(Error::Closed);
        }
        serde_json::from_str(&line).map_err(|e| Error::Unreadable {
            reason: e.to_string(),
        })
    }

    /// The whole answer to request `id` (its `result` or its `error`); the messages before
    /// it that are not that answer (event notifications) are skipped.
    pub fn reply(&mut self, id: u64) -> Result<Value, Error> {
        loop {
            let v = self.read_message()?;
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                return Ok(v);
            }
        }
    }

    /// Calls `method` and returns its result (`null` when the answer has none), or the error
    /// fsed answered as [`Error::Peer`].
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, Error> {
        let id = self.send(method, params)?;
        result_of(self.reply(id)?)
    }

    /// The next event notification's parameters (`event`, `at`, …), once subscribed
    /// (`events.subscribe`); the other messages before it are skipped.
    pub fn next_event(&mut self) -> Result<Value, Error> {
        loop {
            let mut v = self.read_message()?;
            if v.get("method").and_then(Value::as_str) == Some("event") {
                return Ok(v["params"].take());
            }
        }
    }
}

/// An answer's result, or its error as [`Error::Peer`] ([`Error::Unreadable`] when the error
/// object is not one of JSON-RPC's).
pub fn result_of(mut reply: Value) -> Result<Value, Error> {
    match reply.get("error") {
        Some(error) => Err(match PeerError::from_value(error) {
            Some(peer) => Error::Peer(peer),
            None => Error::Unreadable {
                reason: format!("error without an integer code and a string message: {error}"),
            },
        }),
        None => Ok(reply
            .get_mut("result")
            .map(Value::take)
            .unwrap_or(Value::Null)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fsed's side of a connection: answers each request line with `answer(request)`.
    fn serve(answer: impl Fn(&Value) -> Vec<String> + Send + 'static) -> Client {
        let (ours, theirs) = UnixStream::pair().expect("socket pair");
        std::thread::spawn(move || {
            let mut reader = BufReader::new(theirs.try_clone().expect("clone"));
            let mut w = theirs;
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let request: Value = serde_json::from_str(&line).expect("request is JSON");
                for out in answer(&request) {
                    writeln!(w, "{out}").expect("write");
                }
                line.clear();
            }
        });
        Client::from_stream(ours)
    }

    #[test]
    fn a_call_skips_events_and_returns_the_result() {
        let mut c = serve(|r| {
            vec![
                r#"{"jsonrpc":"2.0","method":"event","params":{"event":"lot.sent"}}"#.into(),
                json!({"jsonrpc": "2.0", "id": r["id"], "result": {"method": r["method"]}})
                    .to_string(),
            ]
        });
        assert_eq!(
            c.call("queue.stats", json!({})).unwrap(),
            json!({"method": "queue.stats"})
        );
        // Ids count from 1: the second request is id 2.
        assert_eq!(c.send("lots.list", json!({})).unwrap(), 2);
        assert_eq!(c.next_event().unwrap(), json!({"event": "lot.sent"}));
        assert_eq!(c.reply(2).unwrap()["id"], json!(2));
    }

    #[test]
    fn a_peer_error_keeps_its_code_message_and_data() {
        let mut c = serve(|r| {
            vec![json!({"jsonrpc": "2.0", "id": r["id"], "error": {"code": 1010, "message": "bad act",
                "data": {"field": "act.code"}}})
            .to_string()]
        });
        match c.call("fse.create", json!({"pin": "1234"})) {
            Err(Error::Peer(p)) => {
                assert_eq!((p.code, p.message.as_str()), (1010, "bad act"));
                assert_eq!(p.field(), Some("act.code"));
            }
            other => panic!("not a peer error: {other:?}"),
        }
    }

    #[test]
    fn a_closed_connection_and_a_non_json_line_are_named() {
        let mut c = serve(|_| vec!["not json".into()]);
        assert!(matches!(
            c.call("queue.stats", json!({})),
            Err(Error::Unreadable { .. })
        ));
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let mut c = Client::from_stream(ours);
        let e = c.read_message().unwrap_err();
        assert_eq!(e.to_string(), "fsed closed the connection");
    }

    #[test]
    fn connecting_nowhere_says_what_to_do() {
        let e = Client::connect("/nonexistent/fsed.sock").err().unwrap();
        assert!(
            e.to_string().starts_with("/nonexistent/fsed.sock: ")
                && e.to_string()
                    .ends_with("(is fsed running? `systemctl status fsed`)"),
            "{e}"
        );
    }

    #[test]
    fn scrub_wipes_every_string() {
        let mut v = json!({"pin": "1234", "list": ["5678"], "n": 1});
        scrub(&mut v);
        assert_eq!(v, json!({"pin": "", "list": [""], "n": 1}));
    }
}
