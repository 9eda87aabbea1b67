//! The steps of the conformance scenario that reach under fsed: rows of its database changed
//! behind its back, and a third card of the test's own, which then fails in its reader.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::description::Conformance;
use super::{date_near_its_deadline, Faulty};
use crate::common::{self, wait_for, Rpc};

/// A sheet whose stored body changed: named by its id, never served; the verify pass and
/// the thorough doctor name it.
pub(super) fn damaged_sheet(c: &mut Conformance, rpc: &mut Rpc, db: &rusqlite::Connection, b: i64) {
    // A sheet whose stored body changed: named by its id, never served.
    db.execute(
        "UPDATE sheet_bodies SET der = x'3000' WHERE sheet_id = ?1",
        [b],
    )
    .unwrap();
    let damaged = json!({"kind": "sheet", "id": b.to_string(), "reason": "checksum mismatch"});
    let e = c.refused(rpc, "fse.get", json!({"id": b}), 1031, Some("id"));
    assert_eq!(e["data"]["damaged"], damaged, "{e}");
    let page = c.ok(rpc, "fse.list", json!({"after_id": b - 1, "limit": 1}));
    assert_eq!(page, json!([{"id": b, "damaged": "checksum mismatch"}]));
    // The verify pass names the sheet, and the lot that holds it (the first, rejected).
    let lot_of_b: Option<String> = db
        .query_row("SELECT lot_id FROM sheets WHERE id = ?1", [b], |r| r.get(0))
        .unwrap();
    let mut want = vec![damaged.clone()];
    if let Some(lot) = lot_of_b {
        want.push(json!({"kind": "lot", "id": lot, "reason": format!("its sheet {b} is damaged")}));
    }
    let report = c.ok(rpc, "store.verify", json!({}));
    assert_eq!(report["damaged"], json!(want), "{report}");
    let doctor = c.ok(rpc, "system.doctor", json!({"thorough": true}));
    let rows = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "stored_rows")
        .unwrap();
    assert_eq!(rows["status"], json!("failure"), "{doctor}");
}

/// A sheet whose body is another sheet's, its checksum made to match: it is served, but its
/// lot does not hold it, which fsed cannot explain.
pub(super) fn swapped_body(
    c: &mut Conformance,
    rpc: &mut Rpc,
    db: &rusqlite::Connection,
    a: i64,
    cancelled: i64,
) {
    // A sheet whose body is another sheet's, its checksum made to match: it is served, but
    // its lot does not hold it, which fsed cannot explain.
    let (own, dre): (Vec<u8>, Option<Vec<u8>>) = db
        .query_row(
            "SELECT der, dre FROM sheet_bodies WHERE sheet_id = ?1",
            [a],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let other: Vec<u8> = db
        .query_row(
            "SELECT der FROM sheet_bodies WHERE sheet_id = ?1",
            [cancelled],
            |r| r.get(0),
        )
        .unwrap();
    let put = |der: &[u8]| {
        let sum = fse_queue::sheet_checksum(a, der, dre.as_deref());
        db.execute(
            "UPDATE sheet_bodies SET der = ?2, checksum = ?3 WHERE sheet_id = ?1",
            rusqlite::params![a, der, sum.as_slice()],
        )
        .unwrap();
    };
    put(&other);
    c.refused(rpc, "fse.proof", json!({"id": a}), -32603, None);
    put(&own);
    c.ok(rpc, "fse.proof", json!({"id": a}));
}

/// A third card, the test's own: a specialist's CPS whose second situation may not sign,
/// which then fails in its reader. Returns the runtime serving the card and the sender that
/// stops it.
pub(super) fn third_card(
    c: &mut Conformance,
    rpc: &mut Rpc,
    dir: &Path,
) -> (tokio::runtime::Runtime, tokio::sync::watch::Sender<bool>) {
    // A third card, the test's own: a specialist's CPS whose second situation may not sign,
    // which then fails in its reader.
    let broken = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let specialist = match fse_simulator::profiles::Profile::load("cps-medecin-specialiste") {
        Ok(profile) => profile.card().unwrap().0,
        Err(e) => panic!("profile: {e}"),
    };
    let card: fse_simulator::vpcd::SharedCard = Arc::new(Mutex::new(Box::new(Faulty {
        inner: specialist,
        broken: Arc::clone(&broken),
    })));
    runtime.spawn(fse_simulator::vpcd::serve(
        common::virtual_slot_address(dir, 2),
        card,
        fse_simulator::vpcd::Latency::NONE,
        stopped,
    ));
    common::wait_cards(rpc, 3);
    c.ok(
        rpc,
        "cards.verify_pin",
        json!({"pin": "1234", "cps_serial": "CPS-0020"}),
    );
    let e = c.refused(
        rpc,
        "fse.create",
        json!({"act": {"code": "CS"}, "situation": 1, "cps_serial": "CPS-0020"}),
        1006,
        Some("situation"),
    );
    assert_eq!(e["data"]["rule"], json!("SITUATION_MAY_NOT_SIGN"), "{e}");
    broken.store(true, Ordering::SeqCst);
    c.refused(
        rpc,
        "cards.pin_status",
        json!({"cps_serial": "CPS-0020"}),
        1005,
        Some("cps"),
    );
    // A sheet near its deadline, which its broken CPS cannot sign: it stays in the alarms.
    let late = c.ok(
        rpc,
        "fse.create",
        json!({"act": {"code": "CS", "date": date_near_its_deadline()}, "cps_serial": "CPS-0020", "tiers_payant": {"amo": false}}),
    )["id"]
        .as_i64()
        .unwrap();
    let alarms = c.ok(rpc, "queue.alarms", json!({}));
    assert!(
        alarms
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == json!(late)),
        "{alarms}"
    );

    (runtime, stop)
}

/// The network API's enrollment: a code made, a workstation enrolled with it, a method its
/// default (read-only) rights do not give refused over mutual TLS, the workstation listed,
/// then revoked.
pub(super) fn workstations(c: &mut Conformance, rpc: &mut Rpc) {
    let listed = c.ok(rpc, "workstations.list", json!({}));
    let api = listed["listen"].as_str().unwrap().to_string();
    let paired = c.ok(
        rpc,
        "workstations.pair",
        json!({"name": "desk-1", "valid_secs": 60}),
    );
    let identity = fsed_client::enroll::enroll(&fsed_client::enroll::Request {
        enroll_address: paired["enroll_address"].as_str().unwrap(),
        host: &api,
        name: "desk-1",
        code: paired["code"].as_str().unwrap(),
        timeout: std::time::Duration::from_secs(10),
    })
    .unwrap();
    let mut desk = fsed_client::Client::connect_tls(&api, &identity).unwrap();
    desk.stream()
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    // Without a rights entry a workstation may only read: lots.close is refused.
    let id = desk.send("lots.close", json!({})).unwrap();
    let reply = desk.reply(id).unwrap();
    let e = c.error_line(&reply, 1044, None);
    assert_eq!(e["data"]["method"], json!("lots.close"), "{e}");
    assert!(c.method_codes("lots.close").contains(&1044));
    let listed = c.ok(rpc, "workstations.list", json!({}));
    assert_eq!(
        listed["workstations"][0]["name"],
        json!("desk-1"),
        "{listed}"
    );
    let revoked = c.ok(rpc, "workstations.revoke", json!({"name": "desk-1"}));
    assert_eq!(revoked["revoked"], json!(1), "{revoked}");
}

/// One card shared by two connections: a lease held by one, the other refused at once with
/// `CARD_BUSY`; unlocked, and then nothing left to unlock. The PIN, which the lock asked
/// again, verified again.
pub(super) fn card_shared(c: &mut Conformance, rpc: &mut Rpc, socket: &Path) {
    let mut other = Rpc::connect(socket, std::time::Duration::from_secs(5));
    let lock = c.ok(
        rpc,
        "cards.lock",
        json!({"card": "cps", "serial": "CPS-0001", "lease_secs": 30}),
    );
    assert_eq!(lock["serial"], json!("CPS-0001"), "{lock}");
    // 30 s of lease left > the 2 s a request may wait (the default): refused at once.
    let e = c.refused(
        &mut other,
        "cards.pin_status",
        json!({"cps_serial": "CPS-0001"}),
        1007,
        Some("card"),
    );
    assert_eq!(e["data"]["reason"], json!("lock"), "{e}");
    assert!(e["data"]["retry_after_ms"].as_u64().unwrap() > 2000, "{e}");
    c.ok(rpc, "cards.unlock", json!({"lock": lock["lock"]}));
    c.refused(
        rpc,
        "cards.unlock",
        json!({"lock": lock["lock"]}),
        1020,
        Some("lock"),
    );
    c.ok(
        rpc,
        "cards.verify_pin",
        json!({"pin": "1234", "cps_serial": "CPS-0001"}),
    );
}

/// A fake other fsed on a Unix socket (`[[remote.fsed]] name = "desk"`): it answers the
/// link's subscription and first list (no card), announces the card `announce` gives it (an
/// entry of `cards.list`), lists it, and closes the link when asked for its proof of presence:
/// the link cut in the middle of the operation.
pub(super) fn fake_remote(path: &Path) -> std::sync::mpsc::Sender<Value> {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let (announce, announced) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut out = stream.try_clone().unwrap();
        let mut lines = BufReader::new(stream).lines();
        let mut card = Value::Null;
        let mut listed = 0;
        let reply = |out: &mut std::os::unix::net::UnixStream, v: Value| {
            let _ = out.write_all(format!("{v}\n").as_bytes());
        };
        while let Some(Ok(line)) = lines.next() {
            let req: Value = serde_json::from_str(&line).unwrap();
            let id = req["id"].clone();
            match req["method"].as_str() {
                Some("events.subscribe") => {
                    reply(
                        &mut out,
                        json!({"jsonrpc": "2.0", "id": id, "result": {"subscribed": true}}),
                    );
                }
                Some("cards.list") if listed == 0 => {
                    listed += 1;
                    reply(&mut out, json!({"jsonrpc": "2.0", "id": id, "result": []}));
                    // The card comes when the test says so.
                    let Ok(c) = announced.recv() else {
                        return;
                    };
                    card = c;
                    reply(
                        &mut out,
                        json!({"jsonrpc": "2.0", "method": "event",
                        "params": {"event": "card.inserted", "at": "2026-12-07T00:00:00Z",
                        "reader": card["reader"], "kind": "vitale", "serial": card["serial"], "atr": card["atr"]}}),
                    );
                }
                Some("cards.list") => {
                    reply(
                        &mut out,
                        json!({"jsonrpc": "2.0", "id": id, "result": [card.clone()]}),
                    );
                }
                // The link is cut before the card's answer.
                _ => return,
            }
        }
    });
    announce
}

/// A sheet whose Vitale card is on another fsed, the link cut during its proof of presence:
/// `CARD_UNREACHABLE`, nothing stored. Then `cards.authenticate` and `cards.sign` (a repeat
/// answered from memory, the same request_id for another message refused).
pub(super) fn remote_card_cut(
    c: &mut Conformance,
    rpc: &mut Rpc,
    control: &Path,
    announce: &std::sync::mpsc::Sender<Value>,
) {
    c.ok(
        rpc,
        "cards.verify_pin",
        json!({"pin": "1234", "cps_serial": "CPS-0001"}),
    );
    let proof = c.ok(
        rpc,
        "cards.authenticate",
        json!({"challenge": "07".repeat(32)}),
    );
    assert_eq!(proof["serial"], json!("VIT-0001"), "{proof}");
    let ask =
        json!({"cps_serial": "CPS-0001", "message": "3003020101", "request_id": "conformance:1"});
    let first = c.ok(rpc, "cards.sign", ask.clone());
    let again = c.ok(rpc, "cards.sign", ask);
    assert_eq!(
        (first["repeated"].clone(), again["repeated"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(first["signature"], again["signature"]);
    c.refused(
        rpc,
        "cards.sign",
        json!({"cps_serial": "CPS-0001", "message": "3003020102", "request_id": "conformance:1"}),
        1011,
        Some("request_id"),
    );

    // The local Vitale card leaves (seen at the next exchange with it) for desk's reader.
    let listed = c.ok(rpc, "cards.list", json!({}));
    let vitale = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "vitale")
        .unwrap()
        .clone();
    assert!(vitale["certificate_der"].is_string(), "{vitale}");
    common::order(control, &["remove", "--slot", "vitale"]);
    wait_for(
        "the local Vitale card gone",
        Duration::from_secs(30),
        || {
            let _ = rpc.call("cards.authenticate", json!({"challenge": "07".repeat(32)}));
            let l = rpc.ok("cards.list", json!({}));
            (!l.as_array().unwrap().iter().any(|c| c["kind"] == "vitale")).then_some(())
        },
    );
    announce.send(vitale).unwrap();
    wait_for("desk's Vitale card", Duration::from_secs(30), || {
        let l = rpc.ok("cards.list", json!({}));
        l.as_array()
            .unwrap()
            .iter()
            .any(|c| c["location"]["fsed"] == "desk")
            .then_some(())
    });
    let before = c.ok(rpc, "queue.stats", json!({}));
    let e = c.refused(
        rpc,
        "fse.create",
        json!({"act": {"code": "G"}, "cps_serial": "CPS-0001"}),
        1008,
        None,
    );
    assert_eq!(e["data"]["fsed"], json!("desk"), "{e}");
    assert_eq!(e["data"]["retry_safe"], json!(true), "{e}");
    let after = c.ok(rpc, "queue.stats", json!({}));
    assert_eq!(before["sheets"], after["sheets"], "nothing stored");
}
