//! The steps of the conformance scenario about lines and connections: lines that are not
//! requests, numbers as written, connections refused (too many, a user not allowed, a user
//! past its limit, a connection idle), and the events of the run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::description::Conformance;
use super::{MAX_CONNECTIONS, MAX_LINE};
use crate::common::{self, Rpc};

/// Lines that are not requests; one too long, after which the connection goes on.
pub(super) fn not_requests(c: &mut Conformance, rpc: &mut Rpc) {
    // Lines that are not requests; one too long, after which the connection goes on.
    let r = rpc.raw("{oops");
    c.error_line(&r, -32700, None);
    rpc.send_bytes(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}\n");
    let r = rpc.next_line(Duration::from_secs(10)).unwrap();
    c.error_line(&r, -32700, None);
    let r = rpc.raw(r#"{"jsonrpc":"1.0","id":"v1","method":"system.version"}"#);
    c.error_line(&r, -32600, Some("jsonrpc"));
    assert_eq!(r["id"], json!("v1"));
    let r = rpc.raw(r#"[{"jsonrpc":"2.0","id":2,"method":"system.version"}]"#);
    c.error_line(&r, -32600, None);
    let r = rpc.raw(&"x".repeat(MAX_LINE + 1));
    let e = c.error_line(&r, -32600, None);
    assert_eq!(e["data"]["limit"], json!(MAX_LINE), "{e}");
    let r = rpc.raw(r#"{"jsonrpc":"2.0","id":"m","method":"fse.delete"}"#);
    c.error_line(&r, -32601, Some("method"));
    // A member given twice is refused by its path, not taken last.
    let r = rpc.raw(r#"{"jsonrpc":"2.0","id":"d1","method":"fse.create","params":{"act":{"code":"XYZ","code":"G"}}}"#);
    c.error_line(&r, -32602, Some("act.code"));
    assert_eq!(r["id"], json!("d1"));
    let r = rpc.raw(r#"{"jsonrpc":"2.0","id":"d2","method":"fse.list","params":{"limit":1},"params":{"limit":2}}"#);
    c.error_line(&r, -32600, Some("params"));
    assert_eq!(r["id"], json!("d2"));
    let r = rpc.raw(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"system.version"}"#);
    c.error_line(&r, -32600, Some("id"));
    assert_eq!(r["id"], Value::Null);
}

/// A numeric id comes back exactly as written; an integer written with a fraction or an
/// exponent is refused by name.
pub(super) fn numbers_as_written(c: &mut Conformance, rpc: &mut Rpc) {
    // A numeric id comes back exactly as written: the reply's text is read, not a parse.
    for id in [
        "9007199254740993",
        "18446744073709551615",
        "-9223372036854775808",
        "123456789012345678901234567890",
        "1e2",
    ] {
        rpc.send_bytes(
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"system.version"}}"#).as_bytes(),
        );
        rpc.send_bytes(b"\n");
        let text = rpc.next_text(Duration::from_secs(30)).unwrap();
        assert!(
            text.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"#)),
            "{id}: {text}"
        );
    }
    // An integer written with a fraction or an exponent is refused by name, although JSON
    // Schema's `integer` (which compares values) admits 1500.0 and 1e3 (API.md says so).
    for (number, schema_admits) in [("1500.0", true), ("1e3", true), ("1500.5", false)] {
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":"i","method":"fse.create","params":{{"act":{{"code":"G","excess_cents":{number}}}}}}}"#
        );
        let r = rpc.raw(&line);
        let e = c.error_line(&r, -32602, Some("act.excess_cents"));
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("an integer is expected"),
            "{e}"
        );
        let params: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            c.conforms(&c.params_schema("fse.create"), &params["params"])
                .is_ok(),
            schema_admits,
            "{number}"
        );
    }
    assert_eq!(rpc.ok("system.version", json!({}))["api"], json!(1));
}

/// One connection more than api.max_connections: one error line, then closed.
pub(super) fn one_connection_too_many(c: &mut Conformance, socket: &Path) {
    // One connection more than api.max_connections: one error line, then closed.
    // fsed reads the refused connection's first request and answers under its id; a write
    // it would not take is no failure of the test (`send_refusable`).
    let mut open = Vec::new();
    let refusal = loop {
        assert!(open.len() <= MAX_CONNECTIONS, "no connection refused");
        let mut extra = Rpc::connect(socket, Duration::from_secs(5));
        let id = format!("extra-{}", open.len());
        let request = format!(r#"{{"jsonrpc":"2.0","id":"{id}","method":"system.version"}}"#);
        extra.send_refusable(format!("{request}\n").as_bytes());
        let line = extra.next_line(Duration::from_secs(30)).unwrap();
        assert_eq!(line["id"], json!(id), "{line}");
        if line.get("error").is_some() {
            assert!(extra.closed_within(Duration::from_secs(30)), "closed");
            break line;
        }
        open.push(extra);
    };
    let e = c.error_line(&refusal, 1040, None);
    assert_eq!(e["data"]["limit"], json!(MAX_CONNECTIONS));
    assert_eq!(
        open.len(),
        MAX_CONNECTIONS - 2,
        "the main and the events connections"
    );
    drop(open);
}

/// A user not allowed: a second fsed that lets only another user in. Returns the test's uid.
pub(super) fn user_not_allowed(c: &mut Conformance) -> String {
    // A user not allowed: a second fsed that lets only another user in.
    let closed = tempfile::tempdir().unwrap();
    let me = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .unwrap();
    let other = if me == "4242" { "4243" } else { "4242" };
    let (_closed_fsed, mut outsider) = common::start_fsed_virtual(
        closed.path(),
        2,
        &format!("[api]\nallowed_users = [\"{other}\"]\nallowed_groups = []\n"),
        &[],
    );
    // A client that sends nothing: the error line (id null) once fsed stops waiting.
    let r = outsider.next_line(Duration::from_secs(30)).unwrap();
    let e = c.error_line(&r, 1041, None);
    assert_eq!(e["data"]["uid"].to_string(), me, "{e}");
    assert_eq!(r["id"], Value::Null, "{r}");
    assert!(outsider.closed_within(Duration::from_secs(30)), "closed");
    // One that writes first: its write goes, and the error comes under its request's id.
    let mut outsider = Rpc::connect(&closed.path().join("fsed.sock"), Duration::from_secs(5));
    outsider.send_refusable(b"{\"jsonrpc\":\"2.0\",\"id\":\"out\",\"method\":\"queue.stats\"}\n");
    let r = outsider.next_line(Duration::from_secs(30)).unwrap();
    c.error_line(&r, 1041, None);
    assert_eq!(r["id"], json!("out"), "{r}");
    assert!(outsider.closed_within(Duration::from_secs(30)), "closed");

    me
}

/// A user past its own limit, and a connection idle: a third fsed that serves one
/// connection per user and closes a connection idle for 1 s.
pub(super) fn user_past_its_limit_and_idle(c: &mut Conformance, me: &str) {
    // A user past its own limit, and a connection idle: a third fsed that serves one
    // connection per user and closes a connection idle for 1 s.
    let small = tempfile::tempdir().unwrap();
    let (_small_fsed, mut first) = common::start_fsed_virtual(
        small.path(),
        2,
        "[api]\nmax_connections_per_uid = 1\nidle_timeout_secs = 1\n",
        &[],
    );
    // `first` is served (it asks nothing yet), so a second connection of the same user is one
    // too many for it, while the server has room.
    let mut second = Rpc::connect(&small.path().join("fsed.sock"), Duration::from_secs(5));
    second
        .send_refusable(b"{\"jsonrpc\":\"2.0\",\"id\":\"second\",\"method\":\"system.version\"}\n");
    let r = second.next_line(Duration::from_secs(30)).unwrap();
    let e = c.error_line(&r, 1042, None);
    assert_eq!(r["id"], json!("second"), "{r}");
    assert_eq!(e["data"]["limit"], json!(1), "{e}");
    assert_eq!(e["data"]["uid"].to_string(), me, "{e}");
    assert!(second.closed_within(Duration::from_secs(30)), "closed");
    // `first` sends nothing: closed once idle, with its reason.
    let r = first.next_line(Duration::from_secs(30)).unwrap();
    let e = c.error_line(&r, 1043, None);
    assert_eq!(r["id"], Value::Null, "{r}");
    assert_eq!(e["data"]["idle_timeout_secs"], json!(1), "{e}");
    assert!(first.closed_within(Duration::from_secs(30)), "closed");
}

/// The events of the run, each as described.
pub(super) fn events_as_described(c: &mut Conformance, events: &mut Rpc) {
    // The events of the run, each as described.
    let mut seen = BTreeMap::<String, usize>::new();
    let wanted = [
        "card.inserted",
        "sheet.accepted",
        "sheet.cancelled",
        "sheet.resubmitted",
        "sheet.deadline",
        "sheet.paper_duplicate",
        "lot.closed",
        "lot.signed",
        "lot.sent",
        "arl.received",
        "sheet.paid",
    ];
    let notification = json!({"$ref": "#/components/schemas/Notification"});
    // Every wanted event came long ago (the run waited for each outcome): the wait only
    // bounds a failing run, and a busy machine may deliver late.
    while let Some(line) = events.next_line(Duration::from_secs(30)) {
        c.check("event notification", &notification, &line);
        *seen
            .entry(line["params"]["event"].as_str().unwrap().to_string())
            .or_default() += 1;
        if wanted.iter().all(|w| seen.contains_key(*w)) {
            break;
        }
    }
    let missing: Vec<&&str> = wanted.iter().filter(|w| !seen.contains_key(**w)).collect();
    assert!(
        missing.is_empty(),
        "events never seen: {missing:?} (seen {seen:?})"
    );
}
