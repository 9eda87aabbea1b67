//! The blocking JSON-RPC client the demo speaks to fsed's socket with (one object a line).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use serde_json::{json, Value};

use super::{fail, DemoError};

/// A JSON-RPC connection to fsed: one call at a time, its answer read whole.
pub(super) struct Client {
    pub(super) reader: BufReader<UnixStream>,
    pub(super) id: u64,
}

impl Client {
    pub(super) fn call(&mut self, method: &str, params: Value) -> Result<Value, DemoError> {
        self.id += 1;
        let line = json!({"jsonrpc": "2.0", "id": self.id, "method": method, "params": params})
            .to_string();
        self.reader
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| fail(format!("socket: {e}")))?;
        let mut reply = String::new();
        self.reader
            .read_line(&mut reply)
            .map_err(|e| fail(format!("socket: {e}")))?;
        let v: Value = serde_json::from_str(&reply).map_err(|e| fail(format!("bad reply: {e}")))?;
        match v.get("error") {
            Some(e) => Err(fail(format!(
                "{method}: {}",
                e["message"].as_str().unwrap_or("error")
            ))),
            None => Ok(v["result"].clone()),
        }
    }
}
