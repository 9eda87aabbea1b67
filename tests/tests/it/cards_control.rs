//! Cards inserted, removed and swapped at run time through `fse-sim cards`'
//! control socket, over the real pcscd + vpcd: insertion and removal events,
//! an unknown card ignored, a CPS pulled out in the middle of a lot
//! signature, a renewed CPS picked up without restart, and two CPS at once
//! (a group practice). The two vpcd slots are one shared resource: the tests
//! of this file take turns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{order, serials, wait_for, Proc, Rpc};
use serde_json::json;

/// Starts the simulator with `extra` flags and fsed on pcscd; waits until fsed sees `cards` cards.
fn start(dir: &Path, extra: &[&str], cards: usize) -> (Proc, Proc, Rpc, std::path::PathBuf) {
    let control = dir.join("control.sock");
    let mut args = vec!["cards", "--control", control.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut sim = Proc::start("fse-sim", &args);
    sim.wait_line("cards ready", Duration::from_secs(20));
    let (fsed, mut rpc) = common::start_fsed(dir, &["--transport", "spool"]);
    wait_for("the cards", Duration::from_secs(30), || {
        (serials(&mut rpc).len() == cards).then_some(())
    });
    (sim, fsed, rpc, control)
}

fn lot_state(rpc: &mut Rpc) -> String {
    let lots = rpc.ok("lots.list", json!({}));
    lots[0]["state"].as_str().unwrap_or("").to_string()
}

#[test]
fn insert_remove_and_an_unknown_card_through_the_control_socket() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let (_sim, mut fsed, mut rpc, control) = start(dir.path(), &["--latency-ms", "0"], 2);
    let mut watcher = Rpc::connect(&dir.path().join("fsed.sock"), Duration::from_secs(5));
    watcher.ok("events.subscribe", json!({}));

    order(&control, &["remove", "--slot", "vitale"]);
    assert_eq!(
        watcher.wait_event("card.removed")["reader"],
        "Virtual PCD 00 01"
    );
    order(
        &control,
        &["insert", "--slot", "1", "--profile", "unknown-card"],
    );
    let ev = watcher.wait_event("card.inserted");
    assert_eq!(ev["kind"], "unknown", "{ev}");
    // The foreign card is listed, ignored, and does not stand in for the Vitale card.
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let r = rpc.call("fse.create", json!({"act": {"code": "G"}}));
    assert_eq!(r["error"]["data"]["name"], "CARD_ABSENT", "{r}");
    assert_eq!(r["error"]["data"]["field"], "vitale", "{r}");

    order(
        &control,
        &[
            "swap",
            "--slot",
            "1",
            "--profile",
            "vitale-famille",
            "--gap-ms",
            "500",
        ],
    );
    assert_eq!(
        watcher.wait_event("card.removed")["reader"],
        "Virtual PCD 00 01"
    );
    assert_eq!(watcher.wait_event("card.inserted")["kind"], "vitale");
    let created = rpc.ok("fse.create", json!({"act": {"code": "G"}}));
    assert_eq!(created["state"], "accepted");
    let list = order(&control, &["list"]);
    assert_eq!(list[1]["profile"], "vitale-famille", "{list}");
    assert!(fsed.terminate().success());
}

#[test]
fn a_cps_pulled_out_mid_signature_leaves_the_lot_unsigned_then_it_is_signed_once() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let (_sim, mut fsed, mut rpc, control) = start(
        dir.path(),
        &["--latency-ms", "0", "--signature-latency-ms", "3000"],
        2,
    );
    let mut watcher = Rpc::connect(&dir.path().join("fsed.sock"), Duration::from_secs(5));
    watcher.ok("events.subscribe", json!({}));
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let sheet = rpc.ok("fse.create", json!({"act": {"code": "G"}}));
    rpc.ok("lots.close", json!({}));
    let lot = watcher.wait_event("lot.closed")["lot_id"].clone();
    // The CPS takes 3 s to sign: pull it out while it works.
    std::thread::sleep(Duration::from_millis(1000));
    order(&control, &["remove", "--slot", "cps"]);
    let failed = watcher.wait_event("lot.sign_failed");
    assert_eq!(failed["lot_id"], lot, "{failed}");
    assert!(
        failed["reason"].as_str().unwrap().contains("CPS-0001"),
        "{failed}"
    );
    assert_eq!(lot_state(&mut rpc), "closed", "nothing half done");
    let stats = order(&control, &["stats", "--slot", "cps"]);
    assert_eq!(stats["signatures"], 0, "the card never finished: {stats}");

    // Back in, a new card session: the PIN again, then the lot is signed, once.
    order(
        &control,
        &[
            "insert",
            "--slot",
            "cps",
            "--profile",
            "cps-medecin-generaliste",
        ],
    );
    wait_for("the CPS to come back", Duration::from_secs(30), || {
        serials(&mut rpc)
            .iter()
            .any(|(k, _)| k == "cps")
            .then_some(())
    });
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    assert_eq!(watcher.wait_event("lot.signed")["lot_id"], lot);
    wait_for("the lot to leave", Duration::from_secs(30), || {
        (lot_state(&mut rpc) != "closed").then_some(())
    });
    let stats = order(&control, &["stats", "--slot", "cps"]);
    assert_eq!(stats["signatures"], 1, "{stats}");
    assert_eq!(rpc.ok("lots.list", json!({})).as_array().unwrap().len(), 1);
    assert_eq!(
        rpc.ok("fse.get", json!({"id": sheet["id"]}))["number"],
        sheet["number"]
    );
    assert!(fsed.terminate().success());
}

#[test]
fn a_renewed_cps_signs_the_queued_lots_without_a_restart() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let (_sim, mut fsed, mut rpc, control) = start(dir.path(), &["--latency-ms", "0"], 2);
    let pid = fsed.child.id();
    let mut watcher = Rpc::connect(&dir.path().join("fsed.sock"), Duration::from_secs(5));
    watcher.ok("events.subscribe", json!({}));
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    for _ in 0..2 {
        rpc.ok("fse.create", json!({"act": {"code": "G"}}));
    }
    // The old card leaves before any lot is closed; the renewed one comes in.
    order(
        &control,
        &[
            "swap",
            "--slot",
            "cps",
            "--profile",
            "cps-medecin-generaliste-renouvelee",
        ],
    );
    wait_for("the renewed CPS", Duration::from_secs(30), || {
        serials(&mut rpc)
            .iter()
            .any(|(_, s)| s == "CPS-0002")
            .then_some(())
    });
    rpc.ok("lots.close", json!({}));
    let r = rpc.call("queue.stats", json!({}));
    assert!(r.get("error").is_none(), "{r}");
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let signed = watcher.wait_event("lot.signed");
    assert_eq!(signed["sheets"], 2, "{signed}");
    let stats = order(&control, &["stats", "--slot", "cps"]);
    assert_eq!(
        (stats["profile"].as_str(), stats["signatures"].as_u64()),
        (Some("cps-medecin-generaliste-renouvelee"), Some(1)),
        "the new card signed: {stats}"
    );
    assert_eq!(fsed.child.id(), pid);
    assert!(
        fsed.child.try_wait().unwrap().is_none(),
        "fsed still running"
    );
    assert!(fsed.terminate().success());
}

#[test]
fn two_cps_at_once_each_keep_their_own_pin() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let (_sim, mut fsed, mut rpc, _control) = start(
        dir.path(),
        &[
            "--latency-ms",
            "0",
            "--vitale-profile",
            "cps-medecin-associe",
        ],
        2,
    );
    let mut cps = serials(&mut rpc);
    cps.sort();
    assert_eq!(
        cps,
        vec![
            ("cps".to_string(), "CPS-0001".to_string()),
            ("cps".to_string(), "CPS-0010".to_string())
        ]
    );
    // A wrong PIN on the partner's card costs a try on that card only.
    let r = rpc.call(
        "cards.verify_pin",
        json!({"pin": "1234", "cps_serial": "CPS-0010"}),
    );
    assert_eq!(r["error"]["data"]["name"], "WRONG_PIN", "{r}");
    let st = rpc.ok("cards.pin_status", json!({"cps_serial": "CPS-0001"}));
    assert_eq!(st["tries_left"], 3, "{st}");
    rpc.ok(
        "cards.verify_pin",
        json!({"pin": "4321", "cps_serial": "CPS-0010"}),
    );
    let list = rpc.ok("cards.list", json!({}));
    for c in list.as_array().unwrap() {
        let verified = c["pin_verified"].as_bool().unwrap();
        assert_eq!(verified, c["serial"] == "CPS-0010", "{c}");
    }
    assert!(fsed.terminate().success());
}

/// Two doctors of a group practice bill the same patient the same day, one CPS after the other
/// in the reader: the participation's day cap is each doctor's (4 participations of 2 €), and an
/// idempotency key is each doctor's and names one request.
#[test]
fn two_doctors_bill_one_patient_the_same_day_with_their_own_caps_and_keys() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let (_sim, mut fsed, mut rpc, control) = start(dir.path(), &["--latency-ms", "0"], 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let g = json!({"code": "G"});
    let amounts = |s: &serde_json::Value| {
        let a = &s["sheet"]["amounts"];
        (
            a["amo_cents"].as_u64().unwrap(),
            a["pf_cents"].as_u64().unwrap(),
        )
    };

    // Dr MARTIN's first sheet, with a key: the same key and request answer the same sheet;
    // the same key with another request is refused, naming that sheet.
    let keyed = json!({"act": g, "idempotency_key": "visit-1"});
    let first = rpc.ok("fse.create", keyed.clone());
    let again = rpc.ok("fse.create", keyed.clone());
    assert_eq!(again["id"], first["id"], "{again}");
    // Member order and white space are not the request: the same sheet.
    let reordered = rpc.raw(
        r#"{"jsonrpc":"2.0","id":77,"method":"fse.create","params":{ "idempotency_key" : "visit-1", "act" : { "coefficient": 100, "code": "G" } }}"#,
    );
    assert_eq!(reordered["result"]["id"], first["id"], "{reordered}");
    let other = rpc.call(
        "fse.create",
        json!({"act": g, "tiers_payant": {"amo": true}, "idempotency_key": "visit-1"}),
    );
    let e = &other["error"];
    assert_eq!(e["code"], 1011, "{other}");
    assert_eq!(e["data"]["name"], "IDEMPOTENCY_KEY_REUSED", "{other}");
    assert_eq!(e["data"]["field"], "idempotency_key", "{other}");
    assert_eq!(e["data"]["sheet_id"], first["id"], "{other}");

    // G 30 € at 70 %: 21 € AMO, less 2 € of participation for the first four of the day with
    // Dr MARTIN (19 €), nothing for the fifth (21 €).
    assert_eq!(amounts(&first), (1900, 200));
    for _ in 0..3 {
        assert_eq!(
            amounts(&rpc.ok("fse.create", json!({"act": g}))),
            (1900, 200)
        );
    }
    let fifth = rpc.ok("fse.create", json!({"act": g}));
    assert_eq!(amounts(&fifth), (2100, 0), "Dr MARTIN's fifth: {fifth}");

    // Dr LEROY's card in the same reader, the same patient the same day: his first four
    // withhold again (8 € of the year's 50 € so far: 4 × 2 €).
    order(
        &control,
        &["swap", "--slot", "cps", "--profile", "cps-medecin-associe"],
    );
    wait_for("Dr LEROY's CPS", Duration::from_secs(30), || {
        serials(&mut rpc)
            .iter()
            .any(|(_, s)| s == "CPS-0010")
            .then_some(())
    });
    rpc.ok("cards.verify_pin", json!({"pin": "4321"}));
    let leroy = rpc.ok("fse.create", json!({"act": g}));
    assert_eq!(amounts(&leroy), (1900, 200), "Dr LEROY's first: {leroy}");
    // Dr MARTIN's key is not his: the same key and request make a sheet of his own.
    let his = rpc.ok("fse.create", keyed);
    assert_ne!(his["id"], first["id"], "{his}");
    assert_eq!(his["sheet"]["practitioner"]["surname"], "LEROY", "{his}");
    assert_eq!(amounts(&his), (1900, 200), "Dr LEROY's second: {his}");
    assert!(fsed.terminate().success());
}
