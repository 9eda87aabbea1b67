//! `fsectl` over the real parts (pcscd + vpcd with the simulated cards, RabbitMQ, fsed): every
//! command, its tables and `--json`, secrets on standard input, its exit codes, shell
//! completions, and `fsectl doctor` saying what is wrong (a PIN not verified, the broker gone)
//! and how to fix it. The vpcd slots are shared: one test function does it all, in order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// Runs fsectl on `socket` with `args` and `stdin`; returns (exit code, stdout, stderr).
fn fsectl(socket: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(common::bin("fsectl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs fsectl with `--json` and expects exit `code`; returns the JSON printed.
fn json_of(socket: &Path, args: &[&str], code: i32) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (status, out, err) = fsectl(socket, &all, "");
    assert_eq!(status, code, "fsectl {args:?}: {out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("fsectl {args:?}: {e}: {out}"))
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

#[test]
fn fsectl_drives_every_method_and_doctor_says_what_is_wrong() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let (profile, destination) = common::vitale_of_new_centre(dir.path());
    let (_cards, _control) =
        common::start_fast_cards(dir.path(), &["--vitale-profile", profile.to_str().unwrap()]);
    let return_queue = format!("fsed.returns.fsectl.{}", common::unique());
    let (mut fsed, mut rpc) = common::start_fsed_amqp(dir.path(), &return_queue, 3, 3600);
    common::wait_cards(&mut rpc, 2);
    let socket = dir.path().join("fsed.sock");

    doctor_before_the_pin(&socket, &return_queue);
    secrets_on_standard_input(&socket);
    let v = tables_for_people(&socket);
    let first = sheets_through_fsectl(&socket);
    let _insurer = backlog_then_transmit(&socket, &destination, first, &v);
    completions_and_usage_errors(&socket);

    // The broker gone: the doctor fails the broker check and says how to fix it (exit 5).
    // (fsed starts all the same, and queues sheets until the broker answers.)
    fsed.terminate();
    // A broker out of reach: a port the system just gave and took back, where nothing
    // listens (a connection is refused, as at a broker stopped), not a fixed port.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        format!("[transport]\nkind = \"amqp\"\namqp_url = \"amqp://{gone}/%2f\"\npublish_timeout_secs = 2\n"),
    )
    .unwrap();
    let mut fsed = common::Proc::start(
        "fsed",
        &[
            "--config",
            broken.to_str().unwrap(),
            "--state-dir",
            dir.path().to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--cards",
            "pcsc",
            "--trust-dir",
            dir.path().join("trust").to_str().unwrap(),
            "--return-queue",
            &return_queue,
        ],
    );
    fsed.wait_line("fsed ready", Duration::from_secs(30));
    let report = json_of(&socket, &["doctor"], 5);
    let broker = check(&report, "broker");
    assert_eq!(broker["status"], "failure", "{report}");
    assert!(
        broker["fix"].as_str().unwrap().contains("broker"),
        "{broker}"
    );
    fsed.terminate();
    let (code, _, err) = fsectl(&socket, &["status"], "");
    assert_eq!(code, 3, "{err}");
    common::delete_queues(&[&return_queue, &format!("insurer.amo.{destination}")]);
}

/// The doctor before the PIN: every check there, the PIN a warning with its fix (exit 4).
fn doctor_before_the_pin(socket: &Path, return_queue: &str) {
    // The doctor before the PIN: every check there, the PIN a warning with its fix (exit 4).
    let report = json_of(socket, &["doctor"], 4);
    assert_eq!(report["status"], "warning", "{report}");
    for name in [
        "pcscd",
        "readers",
        "cards",
        "certificates",
        "clock",
        "database",
        "disk",
        "broker",
        "backlog",
    ] {
        assert_eq!(check(&report, name)["status"], "ok", "{name}: {report}");
    }
    let pin = check(&report, "pin");
    assert_eq!(pin["status"], "warning", "{report}");
    assert!(
        pin["detail"].as_str().unwrap().contains("tries left"),
        "{pin}"
    );
    assert!(
        pin["fix"]
            .as_str()
            .unwrap()
            .contains("fsectl cards verify-pin"),
        "{pin}"
    );
    assert!(check(&report, "broker")["detail"]
        .as_str()
        .unwrap()
        .contains(return_queue));
    assert!(check(&report, "certificates")["detail"]
        .as_str()
        .unwrap()
        .contains("valid until"));
    // The human form says the same, with the fix under the finding.
    let (code, out, _) = fsectl(socket, &["doctor"], "");
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("[WARN] pin") && out.contains("→ enter the PIN"),
        "{out}"
    );
}

/// Secrets come on standard input; a wrong PIN is an error (exit 1) naming the field. Then the
/// doctor is content.
fn secrets_on_standard_input(socket: &Path) {
    // Secrets come on standard input; a wrong PIN is an error (exit 1) naming the field.
    let (code, _, err) = fsectl(socket, &["cards", "verify-pin"], "0000\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("[pin]"), "{err}");
    let status = json_of(socket, &["cards", "pin-status"], 0);
    assert_eq!(status["tries_left"], 2, "{status}");
    let (code, out, err) = fsectl(socket, &["cards", "verify-pin"], "1234\n");
    assert_eq!((code, out.trim()), (0, "PIN verified"), "{err}");
    let (code, out, err) = fsectl(socket, &["cards", "change-pin"], "1234\n5678\n");
    assert_eq!((code, out.trim()), (0, "PIN changed"), "{err}");
    let (code, _, err) = fsectl(socket, &["cards", "change-pin"], "5678\n1234\n");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = fsectl(socket, &["cards", "unblock-pin"], "00000000\n1234\n");
    assert_eq!(code, 1, "a wrong PUK is refused: {err}");
    let (code, _, err) = fsectl(socket, &["cards", "verify-pin"], "1234\n");
    assert_eq!(code, 0, "{err}");

    // The doctor is content now (exit 0).
    let report = json_of(socket, &["doctor"], 0);
    assert_eq!(check(&report, "pin")["status"], "ok", "{report}");
}

/// Tables for people; returns `fsectl version`'s answer.
fn tables_for_people(socket: &Path) -> Value {
    // Tables for people.
    let (code, out, _) = fsectl(socket, &["cards", "list"], "");
    assert_eq!(code, 0);
    assert!(
        out.starts_with("READER") && out.contains("verified"),
        "{out}"
    );
    let (code, out, _) = fsectl(socket, &["vitale", "read"], "");
    assert_eq!(code, 0);
    assert!(out.contains("Anne ROUTE"), "{out}");
    let v = json_of(socket, &["version"], 0);
    assert_eq!(v["name"], "fsed");

    v
}

/// Sheets: create, list, get, cancel (twice: the second is refused), events; returns the id
/// of the cancelled sheet.
fn sheets_through_fsectl(socket: &Path) -> i64 {
    // Sheets: create, list, get, cancel (twice: the second is refused), events.
    let mut events = Command::new(common::bin("fsectl"))
        .arg("--socket")
        .arg(socket)
        .args([
            "--json",
            "events",
            "--count",
            "1",
            "--only",
            "sheet.accepted",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The subscription is in place once fsectl says so on standard error.
    // (The reader lives until fsectl ends: it may still write to standard error.)
    let mut said = String::new();
    let mut stderr = std::io::BufReader::new(events.stderr.take().unwrap());
    std::io::BufRead::read_line(&mut stderr, &mut said).unwrap();
    assert!(said.contains("subscribed"), "{said}");
    let (code, out, err) = fsectl(socket, &["fse", "create", "--idempotency-key", "ctl-1"], "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("sheet ") && out.contains("AMO 19.00 €"),
        "{out}"
    );
    let event: Value = serde_json::from_slice(&events.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(event["event"], "sheet.accepted", "{event}");
    let again = json_of(socket, &["fse", "create", "--idempotency-key", "ctl-1"], 0);
    let first = again["id"].as_i64().unwrap();
    let listed = json_of(socket, &["fse", "list", "--state", "accepted"], 0);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let got = json_of(socket, &["fse", "get", &first.to_string()], 0);
    assert_eq!(got["state"], "accepted");
    let (code, out, _) = fsectl(
        socket,
        &[
            "fse",
            "cancel",
            &first.to_string(),
            "--reason",
            "wrong patient",
        ],
        "",
    );
    assert_eq!(
        (code, out.trim()),
        (0, format!("sheet {first} cancelled").as_str())
    );
    let (code, _, err) = fsectl(
        socket,
        &["fse", "cancel", &first.to_string(), "--reason", "again"],
        "",
    );
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = fsectl(socket, &["fse", "list", "--state", "nonsense"], "");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("[state]"), "{err}");

    first
}

/// A backlog with no insurer bound, then an insurer binds and the backlog goes; returns the
/// insurer, to keep until the test ends.
fn backlog_then_transmit(socket: &Path, destination: &str, first: i64, v: &Value) -> common::Proc {
    // A backlog with no insurer bound: transmit --wait gives up (exit 6) and the doctor fails
    // nothing yet (the deadline is far), then an insurer binds and transmit --wait ends at 0.
    for _ in 0..4 {
        assert_eq!(fsectl(socket, &["fse", "create"], "").0, 0);
    }
    let (code, _, err) = fsectl(socket, &["transmit", "--wait", "--timeout", "2"], "");
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("unsent"), "{err}");
    let report = json_of(socket, &["doctor"], 0);
    assert!(
        check(&report, "backlog")["detail"]
            .as_str()
            .unwrap()
            .contains("4 sheet(s) wait"),
        "{report}"
    );
    let insurer = common::start_insurer(&["--binding", destination]);
    // The failed sends left a backoff of several seconds running: transmit.now cuts it short.
    let sent = json_of(socket, &["transmit", "--wait", "--timeout", "3"], 0);
    assert_eq!(sent["unsent"], 0, "{sent}");
    let lots = json_of(socket, &["lots", "list"], 0);
    let lot = lots[0]["id"].as_str().unwrap().to_string();
    assert_eq!(json_of(socket, &["lots", "get", &lot], 0)["id"], json!(lot));
    common::wait_for("the ARLs", Duration::from_secs(30), || {
        let r = json_of(socket, &["returns"], 0);
        (!r["arls"].as_array().unwrap().is_empty()).then_some(())
    });
    let (code, out, _) = fsectl(socket, &["returns"], "");
    assert_eq!(code, 0);
    assert!(out.contains("positive"), "{out}");
    let stats = json_of(socket, &["queue", "stats"], 0);
    assert_eq!(stats["sheets"]["cancelled"], 1, "{stats}");
    assert!(json_of(socket, &["queue", "alarms"], 0)
        .as_array()
        .unwrap()
        .is_empty());
    let (code, out, _) = fsectl(socket, &["status"], "");
    assert_eq!(code, 0);
    assert!(out.starts_with("fsed ") && out.contains("sheets:"), "{out}");
    let proof = json_of(socket, &["fse", "proof", &(first + 1).to_string()], 0);
    assert!(proof.is_object(), "{proof}");
    let called = json_of(socket, &["call", "system.version"], 0);
    assert_eq!(&called, v);

    insurer
}

/// Completions, usage errors.
fn completions_and_usage_errors(socket: &Path) {
    // Completions, usage errors, an unreachable daemon.
    let (code, out, _) = fsectl(socket, &["completions", "bash"], "");
    assert_eq!(code, 0);
    assert!(
        out.contains("fsectl") && out.contains("verify-pin"),
        "completion script"
    );
    assert_eq!(fsectl(socket, &["no-such-command"], "").0, 2);
    assert_eq!(
        fsectl(socket, &["call", "queue.stats", "{not json"], "").0,
        2
    );
}
