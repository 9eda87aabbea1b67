//! A blocking JSON-RPC client of an fsed socket that keeps the events it reads.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One connection: requests, replies, and the events read on the way.
pub struct Rpc {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    /// Events read and not yet taken by a wait.
    pub events: VecDeque<Value>,
}

impl Rpc {
    /// Connects to `path`.
    pub fn connect(path: &Path) -> Result<Rpc, String> {
        let s = UnixStream::connect(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let writer = s.try_clone().map_err(|e| e.to_string())?;
        Ok(Rpc {
            reader: BufReader::new(s),
            writer,
            next_id: 1,
            events: VecDeque::new(),
        })
    }

    /// Sends a request; returns its id.
    pub fn send(&mut self, method: &str, params: &Value) -> Result<u64, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| format!("send {method}: {e}"))?;
        Ok(id)
    }

    /// Reads one line within `timeout`: `None` when none came.
    fn read_line(&mut self, timeout: Duration) -> Result<Option<Value>, String> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err("fsed closed the connection".into()),
            Ok(_) => serde_json::from_str(&line)
                .map(Some)
                .map_err(|e| format!("unreadable line from fsed: {e}")),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
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
