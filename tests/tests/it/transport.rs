//! Transmission over the real RabbitMQ broker, with the cards behind pcscd:
//! a lot for a destination no insurer queue is bound to waits, signed and
//! queued, with a `lot.unroutable` alarm — nothing lost; once an insurer
//! binds that destination the lot is delivered and acknowledged; and the
//! insurer sending every ARL twice changes nothing: one `arl.positive`
//! event per lot, states as after the first; and a negative ARL leaves its
//! sheets rejected with their reason until the practice resubmits them: they
//! go out again in a new lot and are acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{wait_for, Rpc};
use serde_json::json;

#[test]
fn an_unroutable_lot_waits_with_an_alarm_and_duplicate_arls_change_nothing() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    // A Vitale card of a caisse centre no queue is bound to, new at every run.
    let (profile, destination) = common::vitale_of_new_centre(dir.path());
    let (_sim, _control) =
        common::start_fast_cards(dir.path(), &["--vitale-profile", profile.to_str().unwrap()]);
    let return_queue = format!("fsed.returns.transport.{}", common::unique());
    let (mut fsed, mut rpc) = common::start_fsed_amqp(dir.path(), &return_queue, 3, 3600);
    common::wait_cards(&mut rpc, 2);
    let mut watcher = Rpc::connect(&dir.path().join("fsed.sock"), Duration::from_secs(5));
    watcher.ok("events.subscribe", json!({}));
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    for _ in 0..3 {
        rpc.ok(
            "fse.create",
            json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}}),
        );
    }

    // No queue for this destination: the broker returns the lot; it waits, with an alarm.
    let alarm = watcher.wait_event("lot.unroutable");
    assert_eq!(alarm["destination"], json!(destination), "{alarm}");
    let lot_id = alarm["lot_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_secs(3)); // a retry or two
    let lots = rpc.ok("lots.list", json!({}));
    assert_eq!(lots[0]["state"], "signed", "{lots}");
    let stats = rpc.ok("queue.stats", json!({}));
    assert_eq!(stats["sheets"]["signed"], 3, "{stats}");

    // An insurer binds the destination, and answers every lot twice.
    let insurer = common::start_insurer(&["--binding", &destination, "--duplicate-replies"]);
    wait_for("the lot acknowledged", Duration::from_secs(60), || {
        let lots = rpc.ok("lots.list", json!({}));
        (lots[0]["state"] == "acknowledged").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2)); // the second copy of the ARL arrives and is applied
    let stats = rpc.ok("queue.stats", json!({}));
    assert_eq!(stats["sheets"]["acknowledged"], 3, "{stats}");

    let _insurer = negative_arl_and_resubmission(&mut rpc, insurer, &destination);
    assert!(fsed.terminate().success());

    assert_arl_applied_once(dir.path(), &lot_id);

    // The insurer's queue for this run's destination goes with it.
    common::delete_queues(&[&format!("insurer.amo.{destination}"), &return_queue]);
}

/// A negative ARL: an insurer that refuses every sheet of the first lot it sees; the practice
/// resubmits the rejected sheets and they are acknowledged in a new lot. Returns the insurer,
/// which must keep running until the test ends.
fn negative_arl_and_resubmission(
    rpc: &mut Rpc,
    mut insurer: common::Proc,
    destination: &str,
) -> common::Proc {
    // A negative ARL: an insurer that refuses every sheet of the first lot it sees.
    insurer.terminate();
    let insurer = common::start_insurer(&["--binding", destination, "--reject-lots", "1"]);
    let ids: Vec<i64> = (0..3)
        .map(|_| {
            rpc.ok(
                "fse.create",
                json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}}),
            )["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    wait_for("the sheets rejected", Duration::from_secs(60), || {
        let s = rpc.ok("queue.stats", json!({}));
        (s["sheets"]["rejected"] == 3).then_some(())
    });
    for id in &ids {
        let s = rpc.ok("fse.get", json!({"id": id}));
        assert!(
            s["reason"].as_str().unwrap().contains("TEST_REJECTED"),
            "{s}"
        );
    }
    let r = rpc.call("fse.resubmit", json!({"id": 1}));
    assert_eq!(r["error"]["data"]["rule"], "NOT_REJECTED", "{r}");
    for id in &ids {
        let s = rpc.ok("fse.resubmit", json!({"id": id}));
        assert_eq!(s["state"], "accepted", "{s}");
    }
    wait_for(
        "the resubmitted sheets acknowledged",
        Duration::from_secs(60),
        || {
            let s = rpc.ok("queue.stats", json!({}));
            (s["sheets"]["acknowledged"] == 6).then_some(())
        },
    );
    let lots = rpc.ok("lots.list", json!({}));
    let states: Vec<&str> = lots
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 3, "{lots}");
    assert_eq!(
        states.iter().filter(|s| **s == "rejected").count(),
        1,
        "{lots}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "acknowledged").count(),
        2,
        "{lots}"
    );
    insurer
}

/// The events fsed recorded: one ARL applied for the lot (the copy ignored), the lot sent once.
fn assert_arl_applied_once(dir: &std::path::Path, lot_id: &str) {
    let q = fse_queue::Queue::open(&dir.join("fsed.db")).unwrap();
    let events = q.events_since(0, 100_000).unwrap();
    let arls = events
        .iter()
        .filter(|e| e.kind.starts_with("arl.") && e.subject == lot_id)
        .count();
    assert_eq!(arls, 1, "one ARL applied for the lot, the copy ignored");
    let sent = events
        .iter()
        .filter(|e| e.kind == "lot.sent" && e.subject == lot_id)
        .count();
    assert_eq!(sent, 1, "sent once");
}
