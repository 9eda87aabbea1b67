//! What the load generator reads of fsed's answers, and how it connects and makes its set-up
//! calls, on the one client of fsed's socket (`fsed_client`, whose fast path the load loop
//! calls).

use std::path::Path;

use fsed_client::{Client, Error};
use serde_json::value::RawValue;
use serde_json::Value;

use super::PracticeError;

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

/// A connection to fsed's socket for the load generator: the one client, waiting for its
/// answers in `poll` ([`crate::wait_readable`]).
pub(super) fn connect(path: &Path) -> Result<Client, PracticeError> {
    let mut c = Client::connect(path).map_err(|e| match e {
        Error::Connect { source, .. } => socket_error(path, source.to_string()),
        e => socket_error(path, e.to_string()),
    })?;
    c.wait_with(crate::wait_readable);
    Ok(c)
}

/// fsed's socket at `path` could not be used, for `reason`.
fn socket_error(path: &Path, reason: String) -> PracticeError {
    PracticeError::Socket {
        path: path.display().to_string(),
        reason,
    }
}

/// A set-up call (cards, PINs, lots) on `c`, connected to `path`: its result, or the error
/// fsed answered (its object, as JSON) as [`PracticeError::Setup`].
pub(super) fn setup(
    c: &mut Client,
    path: &Path,
    method: &str,
    params: Value,
) -> Result<Value, PracticeError> {
    let failed = |reason: &dyn std::fmt::Display| socket_error(path, format!("{method}: {reason}"));
    match c.call_typed::<_, Value>(method, &params) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => match serde_json::from_str::<Value>(e.get()) {
            Ok(e) => Err(PracticeError::Setup {
                method: method.into(),
                error: e.to_string(),
            }),
            Err(e) => Err(failed(&e)),
        },
        // A line that is not JSON is named by the parser's message alone, as ever.
        Err(Error::Unreadable { reason }) => Err(failed(&reason)),
        Err(e) => Err(failed(&e)),
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
    fn a_setup_error_is_its_object_as_json_and_a_closed_socket_is_named() {
        use std::io::{BufRead, BufReader, Write};
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let fsed = std::thread::spawn(move || {
            let mut r = BufReader::new(theirs.try_clone().unwrap());
            let mut w = theirs;
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            // Members out of order, with spaces: the error is told as its object re-encoded.
            writeln!(
                w,
                r#"{{"jsonrpc":"2.0","id":1,"error":{{"message":"no card", "code":1001}}}}"#
            )
            .unwrap();
            line
        });
        let mut c = Client::from_stream(ours);
        let path = Path::new("/run/fsed/fsed.sock");
        let e = setup(&mut c, path, "cards.list", json!({})).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"cards.list: {"code":1001,"message":"no card"}"#
        );
        let sent: Value = serde_json::from_str(&fsed.join().unwrap()).unwrap();
        assert_eq!(sent["method"], json!("cards.list"));
        // fsed is gone: the socket's error names the call.
        let e = setup(&mut c, path, "lots.close", json!({})).unwrap_err();
        assert!(
            matches!(&e, PracticeError::Socket { path, reason }
                if path == "/run/fsed/fsed.sock" && reason.starts_with("lots.close: ")),
            "{e}"
        );
    }
}
