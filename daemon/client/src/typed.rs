//! The client's fast path, for callers that make many calls on one connection (the load
//! generator): the lines sent and read go through buffers kept from one call to the next, a
//! result is read as the caller's type only (the members it lacks are skipped as they are
//! parsed, not built), an error answer is kept as its JSON text, and the notifications and
//! other answers before the one awaited are skipped.

use std::io::{BufRead, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use zeroize::Zeroize;

use crate::{Client, Error, WaitReadable};

/// A line from fsed: an answer (with the id of its request) or a notification (no id), with
/// only the members read here; the others are skipped without being built.
#[derive(Deserialize)]
struct Reply<T> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default = "Option::default")]
    result: Option<T>,
    /// The error object, kept as its text: read further only by whoever needs it.
    #[serde(default)]
    error: Option<Box<RawValue>>,
}

/// A line that is not what the caller reads, named.
fn unreadable(e: serde_json::Error) -> Error {
    Error::Unreadable {
        reason: e.to_string(),
    }
}

impl Client {
    /// Has the fast path call `wait` on the stream before it reads with nothing buffered: a
    /// caller may wait in `poll` for data alone rather than in `read`, which the kernel also
    /// wakes each time the peer takes what was written (a wake-up for nothing per request).
    /// `wait` must keep the stream's read timeout, and fail as `read` would.
    pub fn wait_with(&mut self, wait: WaitReadable) {
        self.wait = Some(wait);
    }

    /// Calls `method` with `params` and reads its result as `T` only: `Ok(Ok(result))`, or
    /// `Ok(Err(error object as JSON text))` when fsed answered an error; a `null` or missing
    /// result is read as `T` from `null`. The line sent is wiped once written (the
    /// parameters may hold a PIN); `params` is the caller's to wipe.
    pub fn call_typed<P, T>(
        &mut self,
        method: &str,
        params: &P,
    ) -> Result<Result<T, Box<RawValue>>, Error>
    where
        P: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let id = self.start_request(method)?;
        let sent = match serde_json::to_writer(&mut self.out, params) {
            Ok(()) => self.end_request(),
            Err(e) => Err(Error::Encode(e)),
        };
        self.out.zeroize();
        sent?;
        self.typed_answer(id)
    }

    /// [`Client::call_typed`] with `params` given as the JSON text of one value, written as
    /// it is: for a caller that builds its requests' text itself. The line sent is kept (its
    /// buffer is reused by the next call): not for parameters holding a secret.
    pub fn call_json<T: DeserializeOwned>(
        &mut self,
        method: &str,
        params: &[u8],
    ) -> Result<Result<T, Box<RawValue>>, Error> {
        let id = self.start_request(method)?;
        self.out.extend_from_slice(params);
        self.end_request()?;
        self.typed_answer(id)
    }

    /// The next line (an answer or a notification), read as `T` through the reused buffer.
    pub fn read_typed<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        self.line.clear();
        if self.stream.buffer().is_empty() {
            // Over TLS, rustls may hold plaintext already: only a Unix socket is waited on.
            if let (Some(wait), crate::Transport::Unix(s)) = (self.wait, self.stream.get_ref()) {
                wait(s)?;
            }
        }
        if self.stream.read_until(b'\n', &mut self.line)? == 0 {
            return Err(Error::Closed);
        }
        serde_json::from_slice(&self.line).map_err(unreadable)
    }

    /// Starts a request's line in the reused buffer, up to its parameters:
    /// `{"jsonrpc":"2.0","id":…,"method":…,"params":`, members in that order; its id.
    fn start_request(&mut self, method: &str) -> Result<u64, Error> {
        self.next += 1;
        self.out.clear();
        self.out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        write!(self.out, "{}", self.next)?;
        self.out.extend_from_slice(b",\"method\":");
        serde_json::to_writer(&mut self.out, method).map_err(Error::Encode)?;
        self.out.extend_from_slice(b",\"params\":");
        Ok(self.next)
    }

    /// Ends the request's line and writes it.
    fn end_request(&mut self) -> Result<(), Error> {
        self.out.extend_from_slice(b"}\n");
        self.stream.get_mut().write_all(&self.out)?;
        self.stream.get_mut().flush()?;
        Ok(())
    }

    /// The answer to request `id`, its result read as `T`; the lines before it are skipped.
    fn typed_answer<T: DeserializeOwned>(
        &mut self,
        id: u64,
    ) -> Result<Result<T, Box<RawValue>>, Error> {
        loop {
            let reply: Reply<T> = self.read_typed()?;
            if reply.id != Some(id) {
                continue;
            }
            return match (reply.result, reply.error) {
                (_, Some(e)) => Ok(Err(e)),
                (Some(r), None) => Ok(Ok(r)),
                // A `null` result (or none): fine for whoever takes any value.
                (None, None) => T::deserialize(Value::Null).map(Ok).map_err(unreadable),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;

    /// Calls of [`counted_wait`].
    static WAITS: AtomicUsize = AtomicUsize::new(0);

    /// A [`crate::WaitReadable`] that counts its calls and waits for nothing.
    fn counted_wait(_: &UnixStream) -> std::io::Result<()> {
        WAITS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// What the load generator reads of an `fse.create` answer.
    #[derive(Deserialize, Debug, PartialEq)]
    struct Created {
        id: i64,
    }

    /// fsed's side: for each request line read, the lines `answer(request)` gives, written
    /// at once; the request lines as they came, once the client has closed its side.
    fn serve(
        answer: impl Fn(&Value) -> Vec<String> + Send + 'static,
    ) -> (Client, std::thread::JoinHandle<Vec<String>>) {
        let (ours, theirs) = UnixStream::pair().expect("socket pair");
        let fsed = std::thread::spawn(move || {
            let mut reader = BufReader::new(theirs.try_clone().expect("clone"));
            let mut w = theirs;
            let mut lines = Vec::new();
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let request: Value = serde_json::from_str(&line).expect("request is JSON");
                for out in answer(&request) {
                    writeln!(w, "{out}").expect("write");
                }
                lines.push(std::mem::take(&mut line));
            }
            lines
        });
        (Client::from_stream(ours), fsed)
    }

    /// A notification and another call's answer, then the answer to `r`: a sheet created
    /// (id 42, with members `Created` lacks) for the first request, an error for the others.
    fn created_then_refused(r: &Value) -> Vec<String> {
        let answer = if r["id"] == json!(1) {
            json!({"jsonrpc": "2.0", "id": 1, "result": {"id": 42, "number": 7,
                   "state": "created", "sheet": {"acts": [{"code": "G", "note": "\"x\" \\ é"}],
                   "pad": "p".repeat(1500)}}})
        } else {
            json!({"jsonrpc": "2.0", "id": r["id"], "error": {"code": 1010, "message": "m",
                   "data": {"name": "RULE_VIOLATION", "rule": "UNKNOWN_ACT"}}})
        };
        vec![
            r#"{"jsonrpc":"2.0","method":"event","params":{"event":"lot.sent"}}"#.into(),
            r#"{"jsonrpc":"2.0","id":999,"result":{"id":1}}"#.into(),
            answer.to_string(),
        ]
    }

    #[test]
    fn call_json_sends_the_text_as_it_is_and_reads_the_result_or_the_error() {
        let (mut c, fsed) = serve(created_then_refused);
        let params = br#"{"act":{"code":"G"},"cps_serial":"A"}"#;
        let created = c.call_json::<Created>("fse.create", params).unwrap();
        assert_eq!(created.ok(), Some(Created { id: 42 }));
        let refused = c.call_json::<Created>("fse.create", params).unwrap();
        assert_eq!(
            refused.err().map(|e| e.get().to_string()).as_deref(),
            Some(
                r#"{"code":1010,"data":{"name":"RULE_VIOLATION","rule":"UNKNOWN_ACT"},"message":"m"}"#
            )
        );
        drop(c);
        let lines = fsed.join().unwrap();
        // The line as the load generator's own client wrote it: members in this order.
        for (n, line) in lines.iter().enumerate() {
            assert_eq!(
                *line,
                format!(
                    "{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"fse.create\",\"params\":{}}}\n",
                    n + 1,
                    r#"{"act":{"code":"G"},"cps_serial":"A"}"#
                )
            );
        }
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn call_typed_serializes_the_params_and_reads_the_result_or_the_error() {
        let (mut c, fsed) = serve(created_then_refused);
        let params = json!({"pin": "1234", "cps_serial": "A"});
        let created = c.call_typed::<_, Created>("cards.verify_pin", &params);
        assert_eq!(created.unwrap().ok(), Some(Created { id: 42 }));
        // The line's buffer is emptied (and wiped) once sent: it held the PIN.
        assert!(c.out.is_empty());
        let refused = c
            .call_typed::<_, Value>("fse.create", &params)
            .unwrap()
            .unwrap_err();
        let error: Value = serde_json::from_str(refused.get()).unwrap();
        assert_eq!(error["data"]["rule"], json!("UNKNOWN_ACT"));
        drop(c);
        let lines = fsed.join().unwrap();
        assert_eq!(
            lines[1],
            "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"fse.create\",\
             \"params\":{\"cps_serial\":\"A\",\"pin\":\"1234\"}}\n"
        );
    }

    #[test]
    fn a_null_result_reads_as_the_type_from_null() {
        let (mut c, _fsed) =
            serve(|r| vec![json!({"jsonrpc": "2.0", "id": r["id"], "result": null}).to_string()]);
        assert_eq!(
            c.call_typed::<_, Value>("lots.close", &json!({}))
                .unwrap()
                .ok(),
            Some(Value::Null)
        );
        assert_eq!(
            c.call_json::<Option<Created>>("lots.close", b"{}")
                .unwrap()
                .ok(),
            Some(None)
        );
        // `Created` cannot be read from `null`: the answer is named unreadable.
        assert!(matches!(
            c.call_json::<Created>("lots.close", b"{}"),
            Err(Error::Unreadable { .. })
        ));
    }

    #[test]
    fn a_closed_connection_ends_each_call() {
        // fsed reads the request, then closes without answering.
        let (ours, theirs) = UnixStream::pair().unwrap();
        let fsed = std::thread::spawn(move || {
            let mut line = String::new();
            BufReader::new(theirs).read_line(&mut line).unwrap();
        });
        let mut c = Client::from_stream(ours);
        assert!(matches!(
            c.call_json::<Created>("fse.create", b"{}"),
            Err(Error::Closed)
        ));
        fsed.join().unwrap();
        assert!(matches!(
            c.call_typed::<_, Created>("fse.create", &json!({})),
            Err(Error::Closed) | Err(Error::Io(_))
        ));
        assert!(matches!(c.read_typed::<Value>(), Err(Error::Closed)));
    }

    #[test]
    fn read_typed_reads_each_line_and_waits_only_with_nothing_buffered() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut c = Client::from_stream(ours);
        c.wait_with(counted_wait);
        // Two lines in one write: the first read fills the buffer with both.
        theirs
            .write_all(b"{\"method\":\"event\",\"params\":{\"n\":1}}\n{\"id\":5,\"result\":2}\n")
            .unwrap();
        let first: Value = c.read_typed().unwrap();
        assert_eq!(first["params"]["n"], json!(1));
        let second: Value = c.read_typed().unwrap();
        assert_eq!(second, json!({"id": 5, "result": 2}));
        // Waited once: before the first read (nothing buffered), not before the second.
        assert_eq!(WAITS.load(Ordering::Relaxed), 1);
        theirs.write_all(b"not json\n").unwrap();
        assert!(matches!(
            c.read_typed::<Value>(),
            Err(Error::Unreadable { .. })
        ));
        assert_eq!(WAITS.load(Ordering::Relaxed), 2);
    }
}
