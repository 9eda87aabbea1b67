//! The server's tests: refusals (allowlist, limits), the idle timeout, a connection that
//! survives bad lines.

use fse_formats::api;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::*;
use crate::api::test_support::{context, one_connection};

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
    let first: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(first["error"]["code"], json!(api::INVALID_REQUEST));
    let second: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(second["error"]["code"], json!(api::PARSE_ERROR));
    let third: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
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
