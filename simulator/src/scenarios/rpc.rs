//! The scenario runner's connection to an fsed socket: fsed's one client
//! ([`fsed_client::Client`], which also wipes the PINs it sends) with reads bounded in time
//! and the events read while waiting for a reply kept for the steps that wait for them.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use fsed_client::{Client, Error};
use serde_json::Value;

/// One connection: requests, replies, and the events read on the way.
pub struct Rpc {
    client: Client,
    /// Events read and not yet taken by a wait.
    pub events: VecDeque<Value>,
}

impl Rpc {
    /// Connects to `path`.
    pub fn connect(path: &Path) -> Result<Rpc, String> {
        Ok(Rpc {
            client: Client::connect(path).map_err(|e| e.to_string())?,
            events: VecDeque::new(),
        })
    }

    /// Sends a request; returns its id.
    pub fn send(&mut self, method: &str, params: &Value) -> Result<u64, String> {
        self.client
            .send(method, params.clone())
            .map_err(|e| format!("send {method}: {e}"))
    }

    /// Reads one message within `timeout`: `None` when none came.
    fn read_line(&mut self, timeout: Duration) -> Result<Option<Value>, String> {
        self.client
            .stream()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        match self.client.read_message() {
            Ok(v) => Ok(Some(v)),
            Err(Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(Error::Closed) => Err("fsed closed the connection".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Waits for the reply to `id` (events read meanwhile are kept).
    pub fn reply(&mut self, id: u64, timeout: Duration) -> Result<Value, String> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no reply within {} ms", timeout.as_millis()));
            }
            if let Some(v) = self.read_line(left)? {
                if v.get("id").and_then(Value::as_u64) == Some(id) {
                    return Ok(v);
                }
                if v.get("method").and_then(Value::as_str) == Some("event") {
                    self.events.push_back(v["params"].clone());
                }
            }
        }
    }

    /// A call: the whole reply (`result` or `error`).
    pub fn call(&mut self, method: &str, params: &Value) -> Result<Value, String> {
        let id = self.send(method, params)?;
        self.reply(id, Duration::from_secs(30))
    }

    /// Takes the first event named `name` whose fields match `pred`, waiting up to `timeout`;
    /// on timeout, the events of that name seen (for the report).
    pub fn wait_event(
        &mut self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, Vec<Value>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(i) = self
                .events
                .iter()
                .position(|e| e["event"] == name && pred(e))
            {
                return self.events.remove(i).ok_or_else(Vec::new);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self
                    .events
                    .iter()
                    .filter(|e| e["event"] == name)
                    .cloned()
                    .collect());
            }
            match self.read_line(left.min(Duration::from_millis(200))) {
                Ok(Some(v)) if v.get("method").and_then(Value::as_str) == Some("event") => {
                    self.events.push_back(v["params"].clone());
                }
                Ok(_) => {}
                Err(_) => return Err(Vec::new()),
            }
        }
    }
}
