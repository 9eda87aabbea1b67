//! fsed's socket API against its description, `daemon/api.openrpc.json`.
//! fsed runs with its embedded virtual reader (`fse-sim cards` in two
//! slots, a card of the test's own in a third), the spool transport and the
//! insurer simulator. Every method of the description is called with valid
//! parameters, which the description must accept, and its result is checked
//! against the method's result schema (JSON Schema, `jsonschema`); the
//! events received are checked against the notification's schema. Then
//! every stable error code is produced — by bad lines, bad parameters,
//! cards (PIN, absent, faulty, not allowed), state rules, the database
//! locked or holding a sheet it cannot read, one connection too many, a
//! user not allowed, one connection too many for a user, a connection idle
//! — and each error object is checked against the error
//! schema and against the errors its method declares. The test fails when a
//! described method is never called, a stable code never produced, or the
//! daemon serves a method the description lacks. The examples of
//! `daemon/API.md` are checked against the description too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

mod description;
mod examples;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_for, Rpc};
use description::Conformance;
use fse_simulator::card::VirtualCard;
use serde_json::{json, Value};

/// Slots of this test's virtual reader (CPS, Vitale, the test's own card): Unix sockets in
/// its directory (`common::virtual_slot`).
const SLOTS: usize = 3;
/// `api.max_connections` of the fsed under test.
const MAX_CONNECTIONS: usize = 8;
const MAX_LINE: usize = 64 * 1024;

/// A card that answers like `inner` until `broken`, then `6F00` (no precise diagnosis) to
/// every command: a card failing in the reader.
struct Faulty {
    inner: Box<dyn VirtualCard>,
    broken: Arc<AtomicBool>,
}

impl VirtualCard for Faulty {
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        if self.broken.load(Ordering::SeqCst) {
            vec![0x6F, 0x00]
        } else {
            self.inner.process(apdu)
        }
    }
    fn reset(&mut self) {
        self.inner.reset();
    }
}

/// The oldest date of care whose sheet (patient paying) is still on time today: its sending
/// deadline is today or the next working days, within the alarm window.
fn date_near_its_deadline() -> String {
    use fse_formats::calendar::{sending_deadline, Payment, Region};
    let today = chrono::Utc::now().date_naive();
    (1..20)
        .rev()
        .map(|back| today - chrono::Duration::days(back))
        .find(|d| {
            sending_deadline(*d, Payment::PatientPaid, Region::Metropole)
                .is_some_and(|deadline| deadline >= today)
        })
        .unwrap()
        .format("%Y%m%d")
        .to_string()
}

#[test]
fn every_method_and_every_error_code_conforms_to_the_description() {
    let mut c = Conformance::load();
    let dir = tempfile::tempdir().unwrap();
    let (_fsed, mut rpc) = common::start_fsed_virtual(
        dir.path(),
        SLOTS,
        &format!("[api]\nmax_connections = {MAX_CONNECTIONS}\n"),
        &["--lot-max-sheets", "100", "--lot-max-age-secs", "3600"],
    );
    // fsed listens on the slots once ready; the cards connect to them.
    let (_cards, _control) = common::start_fast_cards_on(dir.path(), &[]);
    let spool = dir.path().join("spool");
    let _insurer = common::Proc::start(
        "fse-sim",
        &[
            "insurer",
            "--spool-outbox",
            spool.join("outbox").to_str().unwrap(),
            "--spool-inbox",
            spool.join("inbox").to_str().unwrap(),
            "--trust-dir",
            dir.path().join("trust").to_str().unwrap(),
            "--reject-lots",
            "1",
            "--payments",
        ],
    );
    let socket = dir.path().join("fsed.sock");
    let mut events = Rpc::connect(&socket, Duration::from_secs(5));
    c.ok(&mut events, "events.subscribe", json!({}));

    // The methods served are the methods described.
    let version = c.ok(&mut rpc, "system.version", json!({}));
    let served: BTreeSet<String> = version["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        served,
        c.methods(),
        "methods served (left) and described (right)"
    );
    for method in &served {
        let r = rpc.call(method, json!({"no_such_parameter": 1}));
        assert_eq!(r["error"]["code"], json!(-32602), "{method} is served: {r}");
    }

    common::wait_cards(&mut rpc, 2);
    let cards = c.ok(&mut rpc, "cards.list", json!({}));
    assert_eq!(cards.as_array().unwrap().len(), 2, "{cards}");
    let status = c.ok(&mut rpc, "cards.pin_status", json!({}));
    assert_eq!(status["tries_left"], json!(3), "{status}");

    // The PIN: required, wrong, verified, changed, blocked, unblocked.
    let g = json!({"code": "G"});
    c.refused(&mut rpc, "fse.create", json!({"act": g}), 1004, Some("pin"));
    let e = c.refused(
        &mut rpc,
        "cards.verify_pin",
        json!({"pin": "0000"}),
        1002,
        Some("pin"),
    );
    assert_eq!(e["data"]["tries_left"], json!(2), "{e}");
    let v = c.ok(&mut rpc, "cards.verify_pin", json!({"pin": "1234"}));
    assert_eq!(v["cps_serial"], json!("CPS-0001"));
    c.ok(
        &mut rpc,
        "cards.change_pin",
        json!({"old_pin": "1234", "new_pin": "2468"}),
    );
    c.ok(
        &mut rpc,
        "cards.change_pin",
        json!({"old_pin": "2468", "new_pin": "1234"}),
    );
    let mut blocked = false;
    for _ in 0..4 {
        let r = rpc.call("cards.verify_pin", json!({"pin": "0000"}));
        match r["error"]["code"].as_i64() {
            Some(1002) => {
                c.error_line(&r, 1002, Some("pin"));
            }
            Some(1003) => {
                c.error_line(&r, 1003, Some("pin"));
                blocked = true;
                break;
            }
            _ => panic!("a wrong PIN: {r}"),
        }
    }
    assert!(blocked, "three wrong PINs block it");
    let status = c.ok(&mut rpc, "cards.pin_status", json!({}));
    assert_eq!(status["blocked"], json!(true), "{status}");
    let e = c.refused(
        &mut rpc,
        "cards.unblock_pin",
        json!({"puk": "00000000", "new_pin": "1234"}),
        1002,
        Some("puk"),
    );
    assert_eq!(e["data"]["tries_left"], json!(9), "{e}");
    c.ok(
        &mut rpc,
        "cards.unblock_pin",
        json!({"puk": "12345678", "new_pin": "1234"}),
    );
    c.ok(&mut rpc, "cards.verify_pin", json!({"pin": "1234"}));
    c.ok(&mut rpc, "vitale.read", json!({}));
    c.refused(
        &mut rpc,
        "cards.pin_status",
        json!({"cps_serial": "CPS-9999"}),
        1001,
        Some("cps"),
    );

    // Invalid parameters, each named.
    for (method, params, field) in [
        ("cards.verify_pin", json!({"pin": "12"}), "pin"),
        ("cards.change_pin", json!({"old_pin": "1234"}), "new_pin"),
        ("fse.create", json!({"act": {"code": 5}}), "act.code"),
        (
            "fse.create",
            json!({"acts": [g, {"code": "G", "quantity": -1}]}),
            "acts[1].quantity",
        ),
        ("fse.get", json!({}), "id"),
        ("fse.list", json!({"state": "lost"}), "state"),
        ("fse.cancel", json!({"id": 1, "reason": ""}), "reason"),
        ("lots.get", json!({"lot_id": 5}), "lot_id"),
        ("returns.list", json!({"limit": 0}), "limit"),
        ("queue.stats", json!({"x": 1}), "x"),
        ("fse.get", json!([1]), "params"),
    ] {
        c.refused(&mut rpc, method, params, -32602, Some(field));
    }

    // Sheets: created once per idempotency key, listed a page at a time, refused by a rule.
    let a = c.ok(
        &mut rpc,
        "fse.create",
        json!({"act": g, "idempotency_key": "conformance-a"}),
    );
    let again = c.ok(
        &mut rpc,
        "fse.create",
        json!({"act": g, "idempotency_key": "conformance-a"}),
    );
    assert_eq!(again["id"], a["id"], "the same key, the same sheet");
    // The same key with another request: refused, naming the sheet made with it.
    let e = c.refused(
        &mut rpc,
        "fse.create",
        json!({"act": g, "tiers_payant": {"amo": true}, "idempotency_key": "conformance-a"}),
        1011,
        Some("idempotency_key"),
    );
    assert_eq!(e["data"]["sheet_id"], a["id"], "{e}");
    let a = a["id"].as_i64().unwrap();
    let b = c.ok(
        &mut rpc,
        "fse.create",
        json!({"act": g, "tiers_payant": {"amo": true}}),
    )["id"]
        .as_i64()
        .unwrap();
    let e = c.refused(
        &mut rpc,
        "fse.create",
        json!({"act": {"code": "XYZ"}}),
        1010,
        Some("acts[0].code"),
    );
    assert_eq!(e["data"]["rule"], json!("UNKNOWN_ACT"), "{e}");
    // A refused value of 5,000 characters is echoed cut to 200, then `…`, whichever check
    // refuses it (the pricing rules name the act code whole).
    let long = "Z".repeat(5_000);
    let longest_run = |m: &str| m.split(|x| x != 'Z').map(str::len).max().unwrap_or(0);
    for (method, params) in [
        ("fse.create", json!({"act": {"code": long}})),
        (
            "fse.create",
            json!({"act": {"code": "G", "modifiers": [long]}}),
        ),
        ("fse.create", json!({"acts": [g, {"code": long}]})),
        ("fse.list", json!({"state": long})),
        ("lots.get", json!({"lot_id": long})),
        (long.as_str(), json!({})),
    ] {
        let r = rpc.call(method, params);
        let e = c.error_line(
            &r,
            r["error"]["code"].as_i64().unwrap(),
            r["error"]["data"]["field"].as_str(),
        );
        let message = e["message"].as_str().unwrap();
        // Echoed cut, or not at all, as the check that refuses it chooses.
        let run = longest_run(message);
        assert!(run <= 200, "{message}");
        if run == 200 {
            assert!(
                message.contains(&format!("{}…", "Z".repeat(200))),
                "{message}"
            );
        }
        assert!(message.chars().count() < 600, "{message}");
    }
    let got = c.ok(&mut rpc, "fse.get", json!({"id": a}));
    assert_eq!(
        (got["state"].as_str(), &got["lot_id"]),
        (Some("accepted"), &Value::Null)
    );
    let page = c.ok(
        &mut rpc,
        "fse.list",
        json!({"state": "accepted", "limit": 1}),
    );
    assert_eq!(page[0]["id"], json!(a), "{page}");
    let next = c.ok(
        &mut rpc,
        "fse.list",
        json!({"state": "accepted", "limit": 1, "after_id": a}),
    );
    assert_eq!(next[0]["id"], json!(b), "{next}");
    c.refused(
        &mut rpc,
        "fse.get",
        json!({"id": 999_999}),
        1020,
        Some("id"),
    );
    c.refused(
        &mut rpc,
        "lots.get",
        json!({"lot_id": "810000000009-99999999"}),
        1020,
        Some("lot_id"),
    );
    c.refused(&mut rpc, "fse.proof", json!({"id": a}), 1020, Some("id"));
    let e = c.refused(&mut rpc, "fse.resubmit", json!({"id": a}), 1010, Some("id"));
    assert_eq!(e["data"]["rule"], json!("NOT_REJECTED"), "{e}");

    // The database locked by another process: the cancellation fails, nothing changes.
    let cancelled = c.ok(&mut rpc, "fse.create", json!({"act": g}))["id"]
        .as_i64()
        .unwrap();
    let db = rusqlite::Connection::open(dir.path().join("fsed.db")).unwrap();
    db.busy_timeout(Duration::from_secs(20)).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    c.refused(
        &mut rpc,
        "fse.cancel",
        json!({"id": cancelled, "reason": "patient left"}),
        1030,
        None,
    );
    db.execute_batch("ROLLBACK").unwrap();
    let row = c.ok(
        &mut rpc,
        "fse.cancel",
        json!({"id": cancelled, "reason": "patient left"}),
    );
    assert_eq!(row["reason"], json!("patient left"));

    // Lots: the first one rejected, its sheet sent again, then acknowledged and paid.
    c.ok(&mut rpc, "lots.close", json!({}));
    wait_for("the first lot's rejection", Duration::from_secs(30), || {
        let s = rpc.ok("fse.get", json!({"id": a}));
        (s["state"] == json!("rejected")).then_some(())
    });
    let e = c.refused(
        &mut rpc,
        "fse.cancel",
        json!({"id": a, "reason": "too late"}),
        1010,
        Some("id"),
    );
    assert_eq!(e["data"]["rule"], json!("NOT_CANCELLABLE"), "{e}");
    let again = c.ok(&mut rpc, "fse.resubmit", json!({"id": a}));
    assert_eq!(again["state"], json!("accepted"));
    c.ok(
        &mut rpc,
        "lots.close",
        json!({"practitioner_id": "810000000009"}),
    );
    c.ok(&mut rpc, "transmit.now", json!({}));
    wait_for("the second lot's payment", Duration::from_secs(30), || {
        let s = rpc.ok("fse.get", json!({"id": a}));
        (s["state"] == json!("paid")).then_some(())
    });
    let stored = c.ok(&mut rpc, "fse.get", json!({"id": a}));
    let lot_id = stored["lot_id"].as_str().unwrap().to_string();
    let lots = c.ok(&mut rpc, "lots.list", json!({}));
    assert_eq!(lots.as_array().unwrap().len(), 2, "{lots}");
    let lot = c.ok(&mut rpc, "lots.get", json!({"lot_id": lot_id}));
    assert_eq!(lot["sheet_ids"], json!([a]), "{lot}");
    let proof = c.ok(&mut rpc, "fse.proof", json!({"id": a}));
    assert!(proof["signer_certificate"].is_string(), "{proof}");
    let returns = c.ok(&mut rpc, "returns.list", json!({}));
    assert_eq!(returns["arls"].as_array().unwrap().len(), 2, "{returns}");
    assert_eq!(
        returns["payments"][0]["outcome"],
        json!("paid"),
        "{returns}"
    );
    let of_lot = c.ok(
        &mut rpc,
        "returns.list",
        json!({"lot_id": lot_id, "limit": 10}),
    );
    assert_eq!(of_lot["arls"][0]["status"], json!("positive"), "{of_lot}");
    let doctor = c.ok(&mut rpc, "system.doctor", json!({}));
    let verdicts: BTreeSet<&str> = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for check in [
        "readers", "cards", "clock", "database", "disk", "broker", "backlog",
    ] {
        assert!(verdicts.contains(check), "{check} missing: {doctor}");
    }
    let stats = c.ok(&mut rpc, "queue.stats", json!({}));
    assert_eq!(
        (&stats["sheets"]["paid"], &stats["sheets"]["rejected"]),
        (&json!(1), &json!(1)),
        "{stats}"
    );
    // A copy of the database, holding what the database holds.
    let copy = dir.path().join("backup.db");
    let backup = c.ok(
        &mut rpc,
        "queue.backup",
        json!({"path": copy.to_str().unwrap()}),
    );
    assert_eq!(backup["sheets"], stats["sheets"], "{backup}");
    assert!(copy.is_file());
    c.refused(
        &mut rpc,
        "queue.backup",
        json!({"path": "backup.db"}),
        -32602,
        Some("path"),
    );

    // A sheet whose stored body changed: named by its id, never served.
    db.execute(
        "UPDATE sheet_bodies SET der = x'3000' WHERE sheet_id = ?1",
        [b],
    )
    .unwrap();
    let damaged = json!({"kind": "sheet", "id": b.to_string(), "reason": "checksum mismatch"});
    let e = c.refused(&mut rpc, "fse.get", json!({"id": b}), 1031, Some("id"));
    assert_eq!(e["data"]["damaged"], damaged, "{e}");
    let page = c.ok(&mut rpc, "fse.list", json!({"after_id": b - 1, "limit": 1}));
    assert_eq!(page, json!([{"id": b, "damaged": "checksum mismatch"}]));
    // The verify pass names the sheet, and the lot that holds it (the first, rejected).
    let lot_of_b: Option<String> = db
        .query_row("SELECT lot_id FROM sheets WHERE id = ?1", [b], |r| r.get(0))
        .unwrap();
    let mut want = vec![damaged.clone()];
    if let Some(lot) = lot_of_b {
        want.push(json!({"kind": "lot", "id": lot, "reason": format!("its sheet {b} is damaged")}));
    }
    let report = c.ok(&mut rpc, "store.verify", json!({}));
    assert_eq!(report["damaged"], json!(want), "{report}");
    let doctor = c.ok(&mut rpc, "system.doctor", json!({"thorough": true}));
    let rows = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "stored_rows")
        .unwrap();
    assert_eq!(rows["status"], json!("failure"), "{doctor}");

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
    c.refused(&mut rpc, "fse.proof", json!({"id": a}), -32603, None);
    put(&own);
    c.ok(&mut rpc, "fse.proof", json!({"id": a}));

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
        common::virtual_slot_address(dir.path(), 2),
        card,
        fse_simulator::vpcd::Latency::NONE,
        stopped,
    ));
    common::wait_cards(&mut rpc, 3);
    c.ok(
        &mut rpc,
        "cards.verify_pin",
        json!({"pin": "1234", "cps_serial": "CPS-0020"}),
    );
    let e = c.refused(
        &mut rpc,
        "fse.create",
        json!({"act": {"code": "CS"}, "situation": 1, "cps_serial": "CPS-0020"}),
        1006,
        Some("situation"),
    );
    assert_eq!(e["data"]["rule"], json!("SITUATION_MAY_NOT_SIGN"), "{e}");
    broken.store(true, Ordering::SeqCst);
    c.refused(
        &mut rpc,
        "cards.pin_status",
        json!({"cps_serial": "CPS-0020"}),
        1005,
        Some("cps"),
    );
    // A sheet near its deadline, which its broken CPS cannot sign: it stays in the alarms.
    let late = c.ok(
        &mut rpc,
        "fse.create",
        json!({"act": {"code": "CS", "date": date_near_its_deadline()}, "cps_serial": "CPS-0020", "tiers_payant": {"amo": false}}),
    )["id"]
        .as_i64()
        .unwrap();
    let alarms = c.ok(&mut rpc, "queue.alarms", json!({}));
    assert!(
        alarms
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == json!(late)),
        "{alarms}"
    );

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

    // One connection more than api.max_connections: one error line, then closed.
    // fsed reads the refused connection's first request and answers under its id; a write
    // it would not take is no failure of the test (`send_refusable`).
    let mut open = Vec::new();
    let refusal = loop {
        assert!(open.len() <= MAX_CONNECTIONS, "no connection refused");
        let mut extra = Rpc::connect(&socket, Duration::from_secs(5));
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

    // The events of the run, each as described.
    let mut seen = BTreeMap::<String, usize>::new();
    let wanted = [
        "card.inserted",
        "sheet.accepted",
        "sheet.cancelled",
        "sheet.resubmitted",
        "sheet.deadline",
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

    let never_called: Vec<String> = c.methods().difference(&c.called).cloned().collect();
    assert!(
        never_called.is_empty(),
        "methods never called: {never_called:?}"
    );
    let never_produced: Vec<i64> = c.stable_codes().difference(&c.codes).copied().collect();
    assert!(
        never_produced.is_empty(),
        "error codes never produced: {never_produced:?}"
    );
    let _ = stop.send(true);
    runtime.shutdown_timeout(Duration::from_secs(5));
}
