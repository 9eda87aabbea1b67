//! Cards across fseds (issue 21, item 2), two fseds on this machine, each with its own
//! simulated cards (reception's on pcscd + vpcd, the doctor's in fsed's embedded virtual
//! reader): the doctor's fsed uses the Vitale card held by
//! reception's fsed for the proof of presence of its sheets, sees it come and go through the
//! events that cross the link, and has its lots signed by a CPS held at reception. The link
//! here is reception's local socket (`unix:`); the mutual-TLS version runs over the network
//! listener.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{order, wait_for, Rpc};
use fse_formats::fse::CareSheet;
use serde_json::{json, Value};

/// The remote cards `rpc`'s fsed lists from `fsed`: (kind, serial).
fn remote_cards(rpc: &mut Rpc, fsed: &str) -> Vec<(String, String)> {
    let list = rpc.ok("cards.list", json!({}));
    list.as_array()
        .unwrap()
        .iter()
        .filter(|c| c["location"]["fsed"] == fsed)
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_string(),
                c["serial"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The simulator's count of `what` (`signatures`: CPS signatures; `apdus`) on `slot` (`cps`
/// or `vitale`).
fn count(control: &std::path::Path, slot: &str, what: &str) -> u64 {
    order(control, &["stats", "--slot", slot])[what]
        .as_u64()
        .unwrap()
}

fn signatures(control: &std::path::Path, slot: &str) -> u64 {
    count(control, slot, "signatures")
}

/// The doctor's `cards.list`: his own CPS here, reception's Vitale card there, at reception's
/// address, its certificate checked by the doctor's own trust store.
fn cards_listed_where_they_are(doc: &mut Rpc, reception: &std::path::Path) {
    let listed = doc.ok("cards.list", json!({}));
    let local: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["location"]["fsed"] == "local")
        .collect();
    assert_eq!(local.len(), 1, "the doctor's own CPS only: {listed}");
    assert_eq!(local[0]["kind"], "cps");
    let remote_vitale = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["location"]["fsed"] == "reception" && c["kind"] == "vitale")
        .unwrap();
    assert_eq!(
        remote_vitale["location"]["address"],
        format!("unix:{}", reception.join("fsed.sock").display())
    );
    // This fsed's own check of the card's certificate (the test PKI in its trust directory).
    assert_eq!(
        remote_vitale["certificate"]["status"], "valid",
        "{remote_vitale}"
    );
}

/// The doctor's `remote_cards` check: reception reachable, with its two cards.
fn reception_reported_reachable(doc: &mut Rpc) {
    let report = doc.ok("system.doctor", json!({}));
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "remote_cards")
        .unwrap()
        .clone();
    assert_eq!(check["status"], "ok", "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("reachable since")
            && check["detail"].as_str().unwrap().contains("2 card(s)"),
        "{check}"
    );
}

#[test]
fn a_sheet_made_at_the_doctors_desk_with_the_vitale_card_at_reception() {
    // Reception's readers are pcscd's (a card pulled out is seen at once, without a card
    // operation): its vpcd slots are shared.
    let _turn = common::shared_services();
    let (r, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Reception: a Vitale card and a CPS of the same practitioner as the doctor's (the
    // simulator's default profiles).
    let (_rec_cards, rec_control) = common::start_fast_cards(r.path(), &[]);
    let (_reception, mut rec) = common::start_fsed(r.path(), &["--transport", "spool"]);
    common::wait_cards(&mut rec, 2);
    // The doctor: his CPS, no Vitale card of his own; reception's cards through its socket.
    let config = format!(
        "[remote]\ntimeout_ms = 5000\n\n[[remote.fsed]]\nname = \"reception\"\naddress = \"unix:{}\"\n",
        r.path().join("fsed.sock").display()
    );
    let (_doctor, mut doc) = common::start_fsed_virtual(d.path(), 2, &config, &[]);
    let (_doc_cards, doc_control) =
        common::start_fast_cards_on(d.path(), &["--vitale-profile", "none"]);
    // Both the doctor's own CPS (inserted in his embedded reader) and reception's Vitale card
    // must be seen before the listing is checked: they arrive independently.
    let vitale_serial = wait_for(
        "the doctor's CPS and reception's Vitale card",
        Duration::from_secs(30),
        || {
            let local_cps = remote_cards(&mut doc, "local")
                .iter()
                .any(|(k, _)| k == "cps");
            remote_cards(&mut doc, "reception")
                .into_iter()
                .find(|(k, _)| k == "vitale" && local_cps)
                .map(|(_, s)| s)
        },
    );
    cards_listed_where_they_are(&mut doc, r.path());

    // A secured sheet at the doctor's: the proof of presence is signed by reception's card.
    let before = count(&rec_control, "vitale", "apdus");
    doc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let made = doc.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "beneficiary": 0, "idempotency_key": "remote-1"}),
    );
    let sheet: CareSheet = serde_json::from_value(made["sheet"].clone()).unwrap();
    let presence = sheet.presence.as_ref().expect("a proof of presence");
    assert_eq!(presence.vitale_serial, vitale_serial);
    sheet.verify_presence().expect("the proof verifies");
    // The card's first challenge of its session: SELECT + INTERNAL AUTHENTICATE, 2 APDUs, on
    // reception's card.
    assert_eq!(
        count(&rec_control, "vitale", "apdus"),
        before + 2,
        "one proof of presence on reception's card"
    );

    reception_reported_reachable(&mut doc);

    // The Vitale card leaves reception: the event crosses, the doctor no longer lists it, and
    // a secured sheet is refused for want of a Vitale card.
    let mut watcher = Rpc::connect(&d.path().join("fsed.sock"), Duration::from_secs(5));
    watcher.ok("events.subscribe", json!({"events": ["card.removed"]}));
    order(&rec_control, &["remove", "--slot", "vitale"]);
    let ev = watcher.wait_event("card.removed");
    assert_eq!(ev["location"]["fsed"], "reception", "{ev}");
    assert!(remote_cards(&mut doc, "reception")
        .iter()
        .all(|(k, _)| k != "vitale"));
    let r2 = doc.call(
        "fse.create",
        json!({"act": {"code": "G"}, "beneficiary": 0, "idempotency_key": "remote-2"}),
    );
    assert_eq!(r2["error"]["data"]["name"], "CARD_ABSENT", "{r2}");

    // The doctor's CPS leaves his desk; the same practitioner's CPS is at reception with its
    // PIN verified there: the doctor's lot is signed there, once.
    order(&doc_control, &["remove", "--slot", "cps"]);
    wait_for("the doctor's CPS gone", Duration::from_secs(30), || {
        // The embedded virtual reader sees a card gone at its next exchange with it.
        doc.call("cards.pin_status", json!({}));
        let l = doc.ok("cards.list", json!({}));
        (!l.as_array()
            .unwrap()
            .iter()
            .any(|c| c["location"]["fsed"] == "local"))
        .then_some(())
    });
    rec.ok("cards.verify_pin", json!({"pin": "1234"}));
    let cps_before = signatures(&rec_control, "cps");
    doc.ok("lots.close", json!({}));
    let lot = wait_for(
        "the lot signed at reception",
        Duration::from_secs(30),
        || {
            let lots = doc.ok("lots.list", json!({}));
            let lot = lots.as_array()?.first()?.clone();
            (lot["state"] == "signed" || lot["state"] == "sent").then_some(lot)
        },
    );
    assert_eq!(lot["sheet_count"], 1, "{lot}");
    assert_eq!(
        signatures(&rec_control, "cps"),
        cps_before + 1,
        "one signature on reception's CPS"
    );
}

#[test]
fn a_repeated_sign_request_does_not_reach_the_card_twice() {
    let r = tempfile::tempdir().unwrap();
    let (_fsed, mut rpc) = common::start_fsed_virtual(r.path(), 2, "", &[]);
    let (_cards, control) = common::start_fast_cards_on(r.path(), &[]);
    common::wait_cards(&mut rpc, 2);
    let cps = rpc.ok("cards.list", json!({}));
    let cps = cps
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "cps")
        .unwrap()
        .clone();
    let serial = cps["serial"].as_str().unwrap().to_string();
    let key: [u8; 32] = hex::decode(cps["cps"]["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let ask = |rpc: &mut Rpc, message: &str| {
        rpc.call(
            "cards.sign",
            json!({"cps_serial": serial, "message": message, "request_id": "L-1:abc"}),
        )
    };
    // Without its PIN the card signs nothing, and nothing is kept.
    let e = ask(&mut rpc, "00112233");
    assert_eq!(e["error"]["data"]["name"], "PIN_REQUIRED", "{e}");
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let before = signatures(&control, "cps");
    let first = ask(&mut rpc, "00112233")["result"].clone();
    let second = ask(&mut rpc, "00112233")["result"].clone();
    assert_eq!(first["repeated"], false, "{first}");
    assert_eq!(second["repeated"], true, "{second}");
    assert_eq!(first["signature"], second["signature"]);
    assert_eq!(
        signatures(&control, "cps"),
        before + 1,
        "two requests, one signature by the card"
    );
    let sig = hex::decode(first["signature"].as_str().unwrap()).unwrap();
    assert!(fse_formats::cards::verify_signature(
        &key,
        &[0x00, 0x11, 0x22, 0x33],
        &sig
    ));
    // The same request_id for another message is refused, and the card is not asked.
    let e = ask(&mut rpc, "44556677");
    assert_eq!(e["error"]["data"]["name"], "IDEMPOTENCY_KEY_REUSED", "{e}");
    assert_eq!(signatures(&control, "cps"), before + 1);
}
