//! End to end over the real parts: `fse-sim cards` behind the real pcscd
//! (vpcd driver), `fse-sim insurer` on the real RabbitMQ broker, `fsed` with
//! its SQLite file and Unix socket. One care sheet goes from the two cards to
//! the insurer and its verified ARL comes back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{wait_for, Proc, Rpc};
use serde_json::json;

/// Organism of the simulator's default Vitale card (régime 01, caisse 751, centre 0001).
const DESTINATION: &str = "017510001";

#[test]
fn one_sheet_from_two_cards_through_pcscd_and_rabbitmq_is_acknowledged() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fsed.sock");
    let return_queue = format!("fsed.returns.e2e.{}", common::unique());

    // The default card's organism is shared with the demo and the benchmarks: lots another run
    // left in its insurer queue would be answered first.
    common::delete_queues(&[&format!("insurer.amo.{DESTINATION}")]);
    let mut cards = Proc::start("fse-sim", &["cards"]);
    cards.wait_line("cards ready", Duration::from_secs(20));
    let insurer = common::start_insurer(&["--binding", DESTINATION]);
    let (mut fsed, mut rpc) = common::start_fsed_amqp(dir.path(), &return_queue, 10, 3600);

    // Both cards are found through pcscd, in the vpcd readers, by themselves.
    let cards_seen = wait_for("both cards through pcscd", Duration::from_secs(30), || {
        let list = rpc.ok("cards.list", json!({}));
        let kinds: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["kind"].as_str().unwrap().to_string())
            .collect();
        (kinds.contains(&"cps".into()) && kinds.contains(&"vitale".into())).then_some(list)
    });
    for card in cards_seen.as_array().unwrap() {
        assert!(
            card["reader"].as_str().unwrap().starts_with("Virtual PCD"),
            "card not read through pcscd's vpcd reader: {card}"
        );
    }

    // pcsc_scan (pcsc-tools), an independent PC/SC client, lists both cards with their ATRs.
    let scan = std::process::Command::new("pcsc_scan")
        .args(["-c", "-n"])
        .output()
        .expect("pcsc_scan (pcsc-tools) is installed by tests/run");
    let scan = String::from_utf8_lossy(&scan.stdout);
    for card in cards_seen.as_array().unwrap() {
        let atr = card["atr"].as_str().unwrap();
        let spaced: Vec<String> = atr
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        assert!(
            scan.contains(&spaced.join(" ")),
            "pcsc_scan does not list ATR {atr}:\n{scan}"
        );
    }

    // Bad input: errors name the problem; the connection stays up.
    let r = rpc.raw("{not json");
    assert_eq!(r["error"]["code"], json!(-32700));
    let r = rpc.call("no.such.method", json!({}));
    assert_eq!(r["error"]["code"], json!(-32601));
    let r = rpc.call("fse.create", json!({}));
    assert_eq!(r["error"]["code"], json!(-32602));
    assert_eq!(r["error"]["data"]["field"], json!("acts"));
    let r = rpc.call("fse.create", json!({"act": {"code": "G"}}));
    assert_eq!(r["error"]["data"]["name"], json!("PIN_REQUIRED"), "{r}");

    // A wrong PIN reports the tries left and is not retried; the right one unlocks the card.
    let r = rpc.call("cards.verify_pin", json!({"pin": "0000"}));
    assert_eq!(r["error"]["data"]["name"], json!("WRONG_PIN"), "{r}");
    assert_eq!(r["error"]["data"]["tries_left"], json!(2));
    let r = rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    assert_eq!(r["verified"], json!(true));

    // One sheet: committed, then lot closed, signed by the CPS, published, acknowledged.
    let created = rpc.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "idempotency_key": "e2e-1"}),
    );
    assert_eq!(created["state"], json!("accepted"));
    assert_eq!(created["sheet"]["amounts"]["amo_cents"], json!(1900));
    assert_eq!(created["sheet"]["mode"], json!("secured"));
    let id = created["id"].as_i64().unwrap();
    let again = rpc.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "idempotency_key": "e2e-1"}),
    );
    assert_eq!(again["id"], json!(id), "idempotent create");

    let mut watcher = Rpc::connect(&socket, Duration::from_secs(10));
    watcher.ok("events.subscribe", json!({}));
    rpc.ok("lots.close", json!({}));
    assert_eq!(watcher.wait_event("lot.signed")["sheets"], json!(1));
    assert_eq!(
        watcher.wait_event("arl.received")["status"],
        json!("positive")
    );
    let sheet = wait_for(
        "the sheet to be acknowledged",
        Duration::from_secs(60),
        || {
            let s = rpc.ok("fse.get", json!({"id": id}));
            (s["state"] == json!("acknowledged")).then_some(s)
        },
    );
    let lot_id = sheet["lot_id"].as_str().unwrap().to_string();
    let lots = rpc.ok("lots.list", json!({}));
    let lot = lots
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == json!(lot_id))
        .unwrap();
    assert_eq!(lot["state"], json!("acknowledged"));
    assert_eq!(lot["destination"], json!(DESTINATION));

    assert!(fsed.terminate().success(), "fsed exits 0 on SIGTERM");
    drop(insurer);
    drop(cards);
    common::delete_queues(&[&return_queue]);
}
