//! An ARL lost on its way back, over the real RabbitMQ broker with the insurer simulator and
//! the cards behind pcscd: the return queue is taken away while the insurer answers (the test
//! deletes it and holds a queue of that name of its own, exclusive, then drops it with the
//! answers in it), so the lot stays `sent` with no ARL. After `transport.arl_timeout_secs` fsed
//! sends the lot again by itself (same lot id: the insurer dedups and answers the same ARL),
//! with a `lot.resent` event, an `arl_missing` alarm in `queue.alarms`, a count in
//! `queue.stats` and a warning from `system.doctor`; the time since sending is the one stored,
//! so a restart in between keeps it; once the return queue is back the resent lot's ARL comes
//! and the lot is acknowledged, and the alarm goes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{wait_for, Proc, Rpc};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use serde_json::{json, Value};

/// The ARL timeout of this test, in seconds.
const ARL_TIMEOUT_SECS: i64 = 4;
/// The ARL timeout after the restart, in seconds: longer than the restart takes, so the resend
/// it times comes after the test's subscription to the events.
const LATER_TIMEOUT_SECS: i64 = 12;

/// Starts fsed on pcscd and the broker with its state in `dir` and `config` as its file.
fn start_fsed(dir: &Path, config: &str) -> (Proc, Rpc) {
    let socket = dir.join("fsed.sock");
    let trust = common::write_test_pki(&dir.join("trust"));
    let file = dir.join("fsed.toml");
    std::fs::write(&file, config).unwrap();
    let mut fsed = Proc::start(
        "fsed",
        &[
            "--config",
            file.to_str().unwrap(),
            "--state-dir",
            dir.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--cards",
            "pcsc",
            "--trust-dir",
            trust.to_str().unwrap(),
        ],
    );
    fsed.wait_line("fsed ready", Duration::from_secs(30));
    let rpc = Rpc::connect(&socket, Duration::from_secs(10));
    (fsed, rpc)
}

/// An event's time.
fn at(event: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(event["at"].as_str().unwrap()).unwrap()
}

/// Messages in `queue`, read on the test's own channel (the queue is its own, exclusive).
fn depth(rt: &tokio::runtime::Runtime, channel: &Channel, queue: &str) -> u32 {
    rt.block_on(channel.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .unwrap()
    .message_count()
}

/// The `arl` check of `system.doctor`.
fn doctor_arl(rpc: &mut Rpc) -> Value {
    let report = rpc.ok("system.doctor", json!({}));
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "arl")
        .unwrap_or_else(|| panic!("no arl check: {report}"))
        .clone()
}

#[test]
fn a_lot_whose_arl_is_lost_is_sent_again_by_itself_and_acknowledged() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    // A Vitale card of a caisse centre new at every run: only this test's insurer takes it.
    let (profile, destination) = common::vitale_of_new_centre(dir.path());
    let (_sim, _control) =
        common::start_fast_cards(dir.path(), &["--vitale-profile", profile.to_str().unwrap()]);
    let return_queue = format!("fsed.returns.lostarl.{}", common::unique());
    // One sheet makes a lot; its ARL is waited for 4 s, then it is sent again, 5 times at most.
    let config = |timeout: i64| {
        format!(
            "[transport]\nkind = \"amqp\"\nreturn_queue = \"{return_queue}\"\n\
             arl_timeout_secs = {timeout}\narl_max_resends = 5\n[lots]\nmax_sheets = 1\n"
        )
    };
    // The insurer's queue for the destination is made and bound, then left with nobody taking
    // from it: the lot waits there until the insurer comes back.
    common::start_insurer(&["--binding", &destination]).terminate();
    let insurer_queue = fse_formats::wire::insurer_queue("amo", &destination);

    let (mut fsed, mut rpc) = start_fsed(dir.path(), &config(ARL_TIMEOUT_SECS));
    common::wait_cards(&mut rpc, 2);
    let mut watcher = Rpc::connect(&dir.path().join("fsed.sock"), Duration::from_secs(5));
    watcher.ok("events.subscribe", json!({}));
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    rpc.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}}),
    );
    let sent = watcher.wait_event("lot.sent");
    let lot_id = sent["lot_id"].as_str().unwrap().to_string();
    assert_eq!(sent["destination"], json!(destination), "{sent}");

    // The return queue is taken away: deleted (fsed's consumer is cancelled), and a queue of
    // that name held by the test, exclusive, so fsed cannot declare it again.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (thief, channel) = take_return_queue(&rt, &return_queue);

    // The insurer comes back, takes the lot and answers: the ARL goes into the test's queue.
    let insurer = common::start_insurer(&["--binding", &destination]);
    wait_for(
        "the first ARL in the test's queue",
        Duration::from_secs(30),
        || (depth(&rt, &channel, &return_queue) == 1).then_some(()),
    );
    assert_eq!(common::queue_messages(&insurer_queue), Some(0));
    assert_eq!(
        rpc.ok("lots.get", json!({"lot_id": lot_id}))["state"],
        "sent"
    );

    let resent = check_first_resend(&mut watcher, &sent, &lot_id, &destination);
    // The insurer knows the lot id and answers again, the same ARL: lost again.
    wait_for(
        "the second ARL in the test's queue",
        Duration::from_secs(30),
        || (depth(&rt, &channel, &return_queue) == 2).then_some(()),
    );

    check_arl_missing(&mut rpc, &lot_id, &destination);

    // fsed stops; the test's queue goes, with both answers in it: they are lost for good.
    assert!(fsed.terminate().success());
    rt.block_on(thief.close(200, "done".into())).unwrap();
    // fsed starts again (waiting 12 s for an ARL now): the return queue is declared again, and
    // the next resend counts from the first resend's time, stored with the lot, not from the
    // start.
    let (mut fsed, mut rpc) = start_fsed(dir.path(), &config(LATER_TIMEOUT_SECS));
    let restarted = chrono::Utc::now();
    let mut watcher = Rpc::connect(&dir.path().join("fsed.sock"), Duration::from_secs(5));
    watcher.ok("events.subscribe", json!({}));
    let again = watcher.wait_event("lot.resent");
    assert_eq!(
        (&again["lot_id"], &again["attempt"]),
        (&json!(lot_id), &json!(2)),
        "{again}"
    );
    let waited = (at(&again) - at(&resent)).num_milliseconds();
    assert!(
        waited >= LATER_TIMEOUT_SECS * 1000 - 250,
        "resent again after {waited} ms"
    );
    // Counted from the start, it would have come 12 s after it, or later.
    let after_start = (at(&again).with_timezone(&chrono::Utc) - restarted).num_milliseconds();
    assert!(
        after_start < LATER_TIMEOUT_SECS * 1000,
        "resent {after_start} ms after the start: counted from the start, not the stored time"
    );
    let arl = watcher.wait_event("arl.received");
    assert_eq!(
        (&arl["lot_id"], &arl["status"]),
        (&json!(lot_id), &json!("positive")),
        "{arl}"
    );
    assert_eq!(
        rpc.ok("lots.get", json!({"lot_id": lot_id}))["state"],
        "acknowledged"
    );

    check_acknowledged(&mut rpc);
    assert!(fsed.terminate().success());
    drop(insurer);
    common::delete_queues(&[&return_queue, &insurer_queue]);
}

/// Takes the return queue away from fsed: deletes it (fsed's consumer is cancelled) and
/// declares a queue of that name held by the test, exclusive, so fsed cannot declare it again.
/// Returns the test's connection and the channel that holds the queue.
fn take_return_queue(rt: &tokio::runtime::Runtime, return_queue: &str) -> (Connection, Channel) {
    let thief: Connection = rt
        .block_on(Connection::connect(
            common::AMQP,
            ConnectionProperties::default(),
        ))
        .unwrap();
    let channel = rt.block_on(thief.create_channel()).unwrap();
    rt.block_on(channel.queue_delete(return_queue.into(), QueueDeleteOptions::default()))
        .unwrap();
    rt.block_on(channel.queue_declare(
        return_queue.into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .unwrap();
    (thief, channel)
}

/// No ARL within the timeout: the lot is sent again, same id, after the timeout; returns the
/// `lot.resent` event.
fn check_first_resend(watcher: &mut Rpc, sent: &Value, lot_id: &str, destination: &str) -> Value {
    // No ARL within the timeout: the lot is sent again, same id, 4 s after it was sent (less
    // 250 ms: the lot.sent event is stamped after its commit, the resend counts from it).
    let resent = watcher.wait_event("lot.resent");
    assert_eq!(resent["lot_id"], json!(lot_id), "{resent}");
    assert_eq!(
        (&resent["attempt"], &resent["max_resends"], &resent["last"]),
        (&json!(1), &json!(5), &json!(false)),
        "{resent}"
    );
    assert_eq!(
        (&resent["destination"], &resent["sheets"]),
        (&json!(destination), &json!(1))
    );
    let waited = (at(&resent) - at(sent)).num_milliseconds();
    assert!(
        waited >= ARL_TIMEOUT_SECS * 1000 - 250,
        "resent after {waited} ms"
    );
    resent
}

/// While the ARL is missing: the lot is still sent, with its alarm, its count, a warning.
fn check_arl_missing(rpc: &mut Rpc, lot_id: &str, destination: &str) {
    // While the ARL is missing: the lot is still sent, with its alarm, its count, a warning.
    assert_eq!(
        rpc.ok("lots.get", json!({"lot_id": lot_id}))["state"],
        "sent"
    );
    let alarms = rpc.ok("queue.alarms", json!({}));
    let lost: Vec<&Value> = alarms
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "arl_missing")
        .collect();
    assert_eq!(lost.len(), 1, "{alarms}");
    assert_eq!(lost[0]["lot_id"], json!(lot_id), "{alarms}");
    assert_eq!(
        (&lost[0]["resends"], &lost[0]["given_up"]),
        (&json!(1), &json!(false))
    );
    assert_eq!(lost[0]["destination"], json!(destination), "{alarms}");
    let stats = rpc.ok("queue.stats", json!({}));
    assert_eq!(
        stats["resends"],
        json!({"total": 1, "waiting": 1, "given_up": 0}),
        "{stats}"
    );
    assert_eq!(stats["lots"]["sent"], 1, "{stats}");
    let check = doctor_arl(rpc);
    assert_eq!(check["status"], "warning", "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains(lot_id),
        "{check}"
    );
    assert!(
        check["fix"].as_str().unwrap().contains("return queue"),
        "{check}"
    );
}

/// Acknowledged: no alarm; the two resends stay counted; the doctor is content.
fn check_acknowledged(rpc: &mut Rpc) {
    // Acknowledged: no alarm; the two resends stay counted; the doctor is content.
    let alarms = rpc.ok("queue.alarms", json!({}));
    assert!(
        alarms
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["kind"] != "arl_missing"),
        "{alarms}"
    );
    let stats = rpc.ok("queue.stats", json!({}));
    assert_eq!(
        stats["resends"],
        json!({"total": 2, "waiting": 0, "given_up": 0}),
        "{stats}"
    );
    assert_eq!(stats["sheets"]["acknowledged"], 1, "{stats}");
    assert_eq!(doctor_arl(rpc)["status"], "ok");
}
