//! The blocking JSON-RPC client the load generator speaks to fsed's socket with (one object
//! a line), and what it reads of the answers.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::value::RawValue;
use serde_json::Value;

use super::PracticeError;

/// A line from fsed: an answer (with the id of its request) or a notification (no id), with
/// only the fields read here; the others are skipped without being built.
#[derive(serde::Deserialize)]
struct Reply<T> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default = "Option::default")]
    result: Option<T>,
    /// The error object, kept as its text: read further only when there is one.
    #[serde(default)]
    error: Option<Box<RawValue>>,
}

/// What the load loop reads of an `fse.create` answer: the sheet's id. The rest of the result
/// (its number, state and the sheet, most of the answer) is skipped as it is parsed, not built.
#[derive(serde::Deserialize)]
pub(super) struct Created {
    pub(super) id: i64,
}

/// The key an `fse.create` error is counted under: `error.data.rule` when it is a string,
/// else `error.code` as JSON text (`null` when the error has none). Errors are few: the
/// object is parsed whole.
pub(super) fn error_key(error: &RawValue) -> String {
    let e: Value = serde_json::from_str(error.get()).unwrap_or(Value::Null);
    e["data"]["rule"]
        .as_str()
        .map_or_else(|| e["code"].to_string(), str::to_string)
}

/// A blocking JSON-RPC client on fsed's socket.
pub(super) struct Client {
    /// The line being read (its buffer kept from one answer to the next).
    line: Vec<u8>,
    /// The line being sent (likewise).
    out: Vec<u8>,
    pub(super) reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    path: String,
}

impl Client {
    pub(super) fn connect(path: &Path) -> Result<Client, PracticeError> {
        let fail = |e: std::io::Error| PracticeError::Socket {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let s = UnixStream::connect(path).map_err(fail)?;
        Client::on(s, path.display().to_string()).map_err(fail)
    }

    /// A client on a connected socket (`path` names it in errors).
    fn on(s: UnixStream, path: String) -> std::io::Result<Client> {
        let writer = s.try_clone()?;
        Ok(Client {
            line: Vec::with_capacity(4096),
            out: Vec::with_capacity(1024),
            reader: BufReader::new(s),
            writer,
            next_id: 0,
            path,
        })
    }

    /// One call: `Ok(result)` or `Err(error object)`; notifications in between are skipped.
    fn call(&mut self, method: &str, params: Value) -> std::io::Result<Result<Value, Value>> {
        let params = serde_json::to_vec(&params)?;
        Ok(match self.call_as(method, &params)? {
            Ok(v) => Ok(v),
            Err(e) => Err(serde_json::from_str(e.get())?),
        })
    }

    /// [`Client::call`] with `params` given as JSON text and the result read as `T` only:
    /// what the load loop needs of an answer, without building the rest of it (a sheet's
    /// JSON) as values. The error object comes as its text.
    pub(super) fn call_as<T: serde::de::DeserializeOwned>(
        &mut self,
        method: &str,
        params: &[u8],
    ) -> std::io::Result<Result<T, Box<RawValue>>> {
        self.next_id += 1;
        let id = self.next_id;
        // `{"jsonrpc":"2.0","id":…,"method":…,"params":…}`, members in that order.
        self.out.clear();
        self.out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        write!(self.out, "{id}")?;
        self.out.extend_from_slice(b",\"method\":");
        serde_json::to_writer(&mut self.out, method)?;
        self.out.extend_from_slice(b",\"params\":");
        self.out.extend_from_slice(params);
        self.out.extend_from_slice(b"}\n");
        self.writer.write_all(&self.out)?;
        loop {
            let reply: Reply<T> = self.read_as()?;
            if reply.id != Some(id) {
                continue;
            }
            return match (reply.result, reply.error) {
                (_, Some(e)) => Ok(Err(e)),
                (Some(r), None) => Ok(Ok(r)),
                // A `null` result (or none): fine for whoever takes any value.
                (None, None) => T::deserialize(Value::Null)
                    .map(Ok)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            };
        }
    }

    /// The next line, whole.
    pub(super) fn read(&mut self) -> std::io::Result<Value> {
        self.read_as()
    }

    /// The next line, read as `T`.
    fn read_as<T: serde::de::DeserializeOwned>(&mut self) -> std::io::Result<T> {
        self.line.clear();
        if self.reader.buffer().is_empty() {
            crate::wait_readable(self.reader.get_ref())?;
        }
        if self.reader.read_until(b'\n', &mut self.line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "fsed closed the connection",
            ));
        }
        serde_json::from_slice(&self.line)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    pub(super) fn setup(&mut self, method: &str, params: Value) -> Result<Value, PracticeError> {
        match self.call(method, params) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(PracticeError::Setup {
                method: method.into(),
                error: e.to_string(),
            }),
            Err(e) => Err(PracticeError::Socket {
                path: self.path.clone(),
                reason: format!("{method}: {e}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_are_counted_by_rule_else_by_code() {
        for (text, key) in [
            (
                r#"{"code":1010,"message":"m","data":{"field":"f","rule":"UNKNOWN_ACT"}}"#,
                "UNKNOWN_ACT",
            ),
            (r#"{"code":-32602,"message":"m"}"#, "-32602"),
            (r#"{"code":1006,"data":{"rule":7}}"#, "1006"),
            (r#"{"code":"E1","data":"text"}"#, r#""E1""#),
            (r#"{"message":"no code"}"#, "null"),
            (r#"["not", "an", "object"]"#, "null"),
        ] {
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            assert_eq!(error_key(&raw), key, "{text}");
        }
    }

    #[test]
    fn answers_are_read_for_the_id_or_the_error_only() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut c = Client::on(ours, "pair".into()).unwrap();
        let fsed = std::thread::spawn(move || {
            let mut r = BufReader::new(theirs.try_clone().unwrap());
            let mut w = theirs;
            let sheet =
                json!({"acts": [{"code": "G", "note": "\"x\" \\ é"}], "pad": "p".repeat(1500)});
            let mut requests = Vec::new();
            for n in 0..2 {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                // The line as the former `Request` struct was serialized.
                assert_eq!(
                    line,
                    format!(
                        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"fse.create\",\"params\":{}}}\n",
                        n + 1,
                        r#"{"act":{"code":"G"},"cps_serial":"A"}"#
                    )
                );
                let req: Value = serde_json::from_str(&line).unwrap();
                let id = req["id"].clone();
                // A notification and another call's answer come first.
                writeln!(
                    w,
                    r#"{{"jsonrpc":"2.0","method":"event","params":{{"event":"lot.sent"}}}}"#
                )
                .unwrap();
                writeln!(w, r#"{{"jsonrpc":"2.0","id":999,"result":{{"id":1}}}}"#).unwrap();
                let answer = if n == 0 {
                    json!({"jsonrpc": "2.0", "id": id,
                           "result": {"id": 42, "number": 7, "state": "created", "sheet": sheet}})
                } else {
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": 1010, "message": "m",
                           "data": {"name": "RULE_VIOLATION", "rule": "UNKNOWN_ACT"}}})
                };
                writeln!(w, "{answer}").unwrap();
                requests.push(req);
            }
            requests
        });
        let params = br#"{"act":{"code":"G"},"cps_serial":"A"}"#;
        let created = c.call_as::<Created>("fse.create", params).unwrap();
        assert_eq!(created.map(|c| c.id).ok(), Some(42));
        let refused = c.call_as::<Created>("fse.create", params).unwrap();
        assert_eq!(
            refused.err().map(|e| error_key(&e)).as_deref(),
            Some("UNKNOWN_ACT")
        );
        let requests = fsed.join().unwrap();
        for (n, r) in requests.iter().enumerate() {
            assert_eq!(
                *r,
                json!({"jsonrpc": "2.0", "id": n + 1, "method": "fse.create",
                       "params": {"act": {"code": "G"}, "cps_serial": "A"}})
            );
        }
    }
}
