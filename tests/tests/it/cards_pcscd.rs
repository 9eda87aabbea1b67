//! The card path over the real pcscd with the vpcd driver: an independent
//! PC/SC client (pcsc-tools `scriptor`) reads the simulated CPS, then fsed
//! drives PIN tries, blocking, unblocking with the PUK, PIN change, signing
//! refused without PIN, and card removal and re-insertion. One test: the two
//! vpcd slots are a single shared resource.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_for, Proc, Rpc};
use serde_json::{json, Value};

fn scriptor(apdus: &str) -> String {
    let mut child = Command::new("scriptor")
        .args(["-r", "Virtual PCD 00 00"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scriptor (pcsc-tools) is installed by tests/run");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(apdus.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kinds(rpc: &mut Rpc) -> Vec<String> {
    let list = rpc.ok("cards.list", json!({}));
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap().to_string())
        .collect()
}

fn error_name(reply: &Value) -> &str {
    reply["error"]["data"]["name"].as_str().unwrap_or("")
}

#[test]
fn pin_life_and_card_removal_through_pcscd() {
    let _turn = common::shared_services();
    let mut cards = Proc::start("fse-sim", &["cards"]);
    cards.wait_line("cards ready", Duration::from_secs(20));

    independent_client_reads_the_cps();

    // fsed restarts the story on a fresh card session: the card keeps its counter (2 tries left).
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fsed.sock");
    let (mut fsed, mut rpc) = common::start_fsed(dir.path(), &["--transport", "spool"]);
    wait_for("both cards", Duration::from_secs(30), || {
        let k = kinds(&mut rpc);
        (k.contains(&"cps".into()) && k.contains(&"vitale".into())).then_some(())
    });
    let st = rpc.ok("cards.pin_status", json!({}));
    assert_eq!(st["tries_left"], json!(2), "{st}");

    let created = block_unblock_and_change_pin(&mut rpc);

    // Removal: the cards leave pcscd's readers; fsed sees it, tells its subscribers and refuses to bill.
    let mut watcher = Rpc::connect(&socket, Duration::from_secs(10));
    assert_eq!(
        watcher.ok("events.subscribe", json!({}))["subscribed"],
        json!(true)
    );
    assert!(cards.terminate().success());
    let removed = watcher.wait_event("card.removed");
    assert!(
        removed["reader"]
            .as_str()
            .unwrap()
            .starts_with("Virtual PCD"),
        "{removed}"
    );
    wait_for(
        "the cards to be seen removed",
        Duration::from_secs(20),
        || kinds(&mut rpc).is_empty().then_some(()),
    );
    let r = rpc.call("fse.create", json!({"act": {"code": "G"}}));
    assert_eq!(error_name(&r), "CARD_ABSENT", "{r}");

    // Re-insertion: a new card session, so the PIN must be presented again; the queued sheet is still there.
    let mut cards = Proc::start("fse-sim", &["cards"]);
    cards.wait_line("cards ready", Duration::from_secs(20));
    wait_for("the cards to come back", Duration::from_secs(30), || {
        (kinds(&mut rpc).len() == 2).then_some(())
    });
    let r = rpc.call("fse.create", json!({"act": {"code": "G"}}));
    assert_eq!(error_name(&r), "PIN_REQUIRED", "{r}");
    assert_eq!(
        rpc.ok("fse.get", json!({"id": created["id"]}))["number"],
        created["number"]
    );

    assert!(fsed.terminate().success());
    drop(cards);
}

/// An independent PC/SC client (scriptor) reads the CPS holder file and sees the documented
/// status words; its wrong PIN leaves the card with 2 tries.
fn independent_client_reads_the_cps() {
    // An independent PC/SC client reads the CPS holder file and sees the documented status words.
    let out = wait_for("scriptor to reach the CPS", Duration::from_secs(20), || {
        let out = scriptor(
            "00 A4 04 0C 0D E8 28 BD 08 0F 80 25 00 00 01 FF 00 10\n00 A4 02 0C 02 D1 00\n00 B0 00 00 00\n00 20 00 81 08 39 39 39 39 FF FF FF FF\n00 A4 02 0C 02 12 34\n",
        );
        out.contains("< 90 00").then_some(out)
    });
    let holder_hex: String = "MARTIN".bytes().map(|b| format!("{b:02X} ")).collect();
    assert!(
        out.replace('\n', "").contains(holder_hex.trim()),
        "holder file not read:\n{out}"
    );
    assert!(
        out.contains("< 63 C2"),
        "wrong PIN must answer 63C2 (2 tries left):\n{out}"
    );
    assert!(
        out.contains("< 6A 82"),
        "missing file must answer 6A82:\n{out}"
    );
}

/// Blocks the PIN with two more wrong ones, unblocks it with the PUK, changes it and bills a
/// sheet; returns the created sheet.
fn block_unblock_and_change_pin(rpc: &mut Rpc) -> Value {
    // Two more wrong PINs: 1 left, then blocked; the right PIN no longer opens it; nothing can be signed.
    let r = rpc.call("cards.verify_pin", json!({"pin": "0000"}));
    assert_eq!(
        (error_name(&r), &r["error"]["data"]["tries_left"]),
        ("WRONG_PIN", &json!(1)),
        "{r}"
    );
    let r = rpc.call("cards.verify_pin", json!({"pin": "0000"}));
    assert_eq!(error_name(&r), "PIN_BLOCKED", "{r}");
    let r = rpc.call("cards.verify_pin", json!({"pin": "1234"}));
    assert_eq!(error_name(&r), "PIN_BLOCKED", "{r}");
    assert_eq!(
        rpc.ok("cards.pin_status", json!({}))["blocked"],
        json!(true)
    );
    let r = rpc.call("fse.create", json!({"act": {"code": "G"}}));
    assert_eq!(error_name(&r), "PIN_REQUIRED", "{r}");

    // Unblock with the PUK from the PIN letter (a wrong one counts down), then change the PIN.
    let r = rpc.call(
        "cards.unblock_pin",
        json!({"puk": "00000000", "new_pin": "2468"}),
    );
    assert_eq!(
        (error_name(&r), r["error"]["data"]["field"].as_str()),
        ("WRONG_PIN", Some("puk")),
        "{r}"
    );
    rpc.ok(
        "cards.unblock_pin",
        json!({"puk": "12345678", "new_pin": "2468"}),
    );
    rpc.ok("cards.verify_pin", json!({"pin": "2468"}));
    rpc.ok(
        "cards.change_pin",
        json!({"old_pin": "2468", "new_pin": "1234"}),
    );
    let created = rpc.ok("fse.create", json!({"act": {"code": "G"}}));
    assert_eq!(created["state"], json!("accepted"));
    created
}

/// Starts fsed on pcscd with the given card profiles; returns the processes and a client once both cards are read.
fn with_cards(cps: &str, vitale: &str, dir: &std::path::Path) -> (Proc, Proc, Rpc) {
    let mut cards = Proc::start(
        "fse-sim",
        &["cards", "--cps-profile", cps, "--vitale-profile", vitale],
    );
    cards.wait_line("cards ready", Duration::from_secs(20));
    let (fsed, mut rpc) = common::start_fsed(dir, &["--transport", "spool"]);
    wait_for("both cards", Duration::from_secs(30), || {
        (kinds(&mut rpc).len() == 2).then_some(())
    });
    (cards, fsed, rpc)
}

#[test]
fn expired_revoked_staff_blocked_and_opposed_cards_and_closed_rights_are_refused_through_pcscd() {
    let _turn = common::shared_services();
    for (cps, vitale, pin_ok, expect, field) in [
        (
            "cps-expired",
            "vitale-famille",
            true,
            "CARD_NOT_ALLOWED",
            "cps",
        ),
        (
            "cpe-secretaire",
            "vitale-famille",
            true,
            "CARD_NOT_ALLOWED",
            "cps",
        ),
        (
            "cps-pin-blocked",
            "vitale-famille",
            false,
            "PIN_REQUIRED",
            "pin",
        ),
        (
            "cps-medecin-generaliste",
            "vitale-droits-expires",
            true,
            "RULE_VIOLATION",
            "beneficiary.rights",
        ),
        // Revoked: on the CPS CA's CRL, though within its dates and with the right PIN.
        (
            "cps-revoked",
            "vitale-famille",
            true,
            "CARD_NOT_ALLOWED",
            "cps",
        ),
        // Opposed: on the Vitale CA's CRL (the opposition list).
        (
            "cps-medecin-generaliste",
            "vitale-opposition",
            true,
            "CARD_NOT_ALLOWED",
            "vitale",
        ),
    ] {
        refused_pair(cps, vitale, pin_ok, expect, field);
    }

    foreign_card_is_ignored();
}

/// One refused pair of cards: fsed refuses to bill with the expected error and field, each
/// card's certificate status is the expected one, nothing is queued; then the cards go out.
fn refused_pair(cps: &str, vitale: &str, pin_ok: bool, expect: &str, field: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (cards, mut fsed, mut rpc) = with_cards(cps, vitale, dir.path());
    let r = rpc.call("cards.verify_pin", json!({"pin": "1234"}));
    if pin_ok {
        assert!(r.get("error").is_none(), "{cps}: {r}");
    } else {
        assert_eq!(error_name(&r), "PIN_BLOCKED", "{cps}: {r}");
    }
    let r = rpc.call("fse.create", json!({"act": {"code": "G"}}));
    assert_eq!(
        (error_name(&r), r["error"]["data"]["field"].as_str()),
        (expect, Some(field)),
        "{cps} + {vitale}: {r}"
    );
    // Each card's certificate was checked against the trust store fse-sim pki wrote.
    let list = rpc.ok("cards.list", json!({}));
    for card in list.as_array().unwrap() {
        let serial = card["serial"].as_str().unwrap();
        let status = card["certificate"]["status"].as_str().unwrap();
        let expected = match serial {
            "CPS-0500" | "VIT-0666" => "revoked",
            "CPS-0300" => "expired",
            _ => "valid",
        };
        assert_eq!(status, expected, "{serial}: {card}");
        assert_eq!(
            card["certificate"]["revocation_checked"],
            expected != "expired",
            "{card}"
        );
    }
    assert_eq!(
        rpc.ok("queue.stats", json!({}))["sheets"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum::<u64>()),
        Some(0),
        "nothing accepted"
    );
    // Take the cards out and let pcscd see the readers empty before the next pair goes in.
    let mut cards = cards;
    assert!(cards.terminate().success());
    wait_for("the readers to empty", Duration::from_secs(20), || {
        kinds(&mut rpc).is_empty().then_some(())
    });
    assert!(fsed.terminate().success());
}

/// A foreign card (neither CPS nor Vitale) is listed as unknown and ignored.
fn foreign_card_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (cards, mut fsed, mut rpc) = with_cards("unknown-card", "vitale-famille", dir.path());
    let mut k = kinds(&mut rpc);
    k.sort();
    assert_eq!(k, ["unknown", "vitale"]);
    let r = rpc.call("cards.verify_pin", json!({"pin": "1234"}));
    assert_eq!(
        (error_name(&r), r["error"]["data"]["field"].as_str()),
        ("CARD_ABSENT", Some("cps")),
        "{r}"
    );
    let mut cards = cards;
    assert!(cards.terminate().success());
    wait_for("the readers to empty", Duration::from_secs(20), || {
        kinds(&mut rpc).is_empty().then_some(())
    });
    assert!(fsed.terminate().success());
}
