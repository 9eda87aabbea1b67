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
//! user not allowed, one connection too many for a user, a connection idle,
//! a workstation over the network asking beyond its rights — and each error object is checked against the error
//! schema and against the errors its method declares. The test fails when a
//! described method is never called, a stable code never produced, or the
//! daemon serves a method the description lacks. The examples of
//! `daemon/API.md` are checked against the description too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

mod app;
mod description;
mod examples;
mod lines;
mod rights;
mod steps;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    // Another fsed whose card is used, then cut off: a fake one (`steps::fake_remote`).
    let desk = dir.path().join("desk.sock");
    let announce = steps::fake_remote(&desk);
    let (_fsed, mut rpc) = common::start_fsed_virtual(
        dir.path(),
        SLOTS,
        &format!(
            "[api]\nmax_connections = {MAX_CONNECTIONS}\n\n[network]\nlisten = \"127.0.0.1:0\"\nenroll_listen = \"127.0.0.1:0\"\n\n[[remote.fsed]]\nname = \"desk\"\naddress = \"unix:{}\"\n",
            desk.display()
        ),
        &["--lot-max-sheets", "100", "--lot-max-age-secs", "3600"],
    );
    // fsed listens on the slots once ready; the cards connect to them.
    let (_cards, control) = common::start_fast_cards_on(dir.path(), &[]);
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

    methods_served_are_described(&mut c, &mut rpc);
    let g = json!({"code": "G"});
    pin_life(&mut c, &mut rpc, &g);
    invalid_parameters(&mut c, &mut rpc, &g);
    let (a, b) = sheets_once_per_key(&mut c, &mut rpc, &g);
    app::app_presence(&mut c, &mut rpc, &g);
    let (db, cancelled) = database_locked(&mut c, &mut rpc, dir.path(), &g);
    lots_rejected_then_paid(&mut c, &mut rpc, a);
    doctor_stats_and_backup(&mut c, &mut rpc, dir.path());
    steps::workstations(&mut c, &mut rpc);
    rights::rights_online(&mut c, &mut rpc, dir.path());
    steps::damaged_sheet(&mut c, &mut rpc, &db, b);
    steps::swapped_body(&mut c, &mut rpc, &db, a, cancelled);
    let (runtime, stop) = steps::third_card(&mut c, &mut rpc, dir.path());
    let mut runtime = Background(Some(runtime));
    steps::card_shared(&mut c, &mut rpc, &socket);
    lines::not_requests(&mut c, &mut rpc);
    lines::numbers_as_written(&mut c, &mut rpc);
    lines::one_connection_too_many(&mut c, &socket);
    let me = lines::user_not_allowed(&mut c);
    lines::user_past_its_limit_and_idle(&mut c, &me);
    lines::events_as_described(&mut c, &mut events);
    steps::remote_card_cut(&mut c, &mut rpc, &control, &announce);

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
    if let Some(runtime) = runtime.0.take() {
        runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

/// The third card's runtime, shut down without waiting for its blocking tasks when the test
/// fails: a plain drop would wait for the card's reader thread for ever, and a failed
/// assertion would hang instead of failing.
struct Background(Option<tokio::runtime::Runtime>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The methods served are the methods described; each is served (refuses an unknown parameter).
fn methods_served_are_described(c: &mut Conformance, rpc: &mut Rpc) {
    // The methods served are the methods described.
    let version = c.ok(rpc, "system.version", json!({}));
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
}

/// The cards read; the PIN: required, wrong, verified, changed, blocked, unblocked.
fn pin_life(c: &mut Conformance, rpc: &mut Rpc, g: &Value) {
    common::wait_cards(rpc, 2);
    let cards = c.ok(rpc, "cards.list", json!({}));
    assert_eq!(cards.as_array().unwrap().len(), 2, "{cards}");
    let status = c.ok(rpc, "cards.pin_status", json!({}));
    assert_eq!(status["tries_left"], json!(3), "{status}");

    // The PIN: required, wrong, verified, changed, blocked, unblocked.
    c.refused(rpc, "fse.create", json!({"act": g}), 1004, Some("pin"));
    let e = c.refused(
        rpc,
        "cards.verify_pin",
        json!({"pin": "0000"}),
        1002,
        Some("pin"),
    );
    assert_eq!(e["data"]["tries_left"], json!(2), "{e}");
    let v = c.ok(rpc, "cards.verify_pin", json!({"pin": "1234"}));
    assert_eq!(v["cps_serial"], json!("CPS-0001"));
    c.ok(
        rpc,
        "cards.change_pin",
        json!({"old_pin": "1234", "new_pin": "2468"}),
    );
    c.ok(
        rpc,
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
    let status = c.ok(rpc, "cards.pin_status", json!({}));
    assert_eq!(status["blocked"], json!(true), "{status}");
    let e = c.refused(
        rpc,
        "cards.unblock_pin",
        json!({"puk": "00000000", "new_pin": "1234"}),
        1002,
        Some("puk"),
    );
    assert_eq!(e["data"]["tries_left"], json!(9), "{e}");
    c.ok(
        rpc,
        "cards.unblock_pin",
        json!({"puk": "12345678", "new_pin": "1234"}),
    );
    c.ok(rpc, "cards.verify_pin", json!({"pin": "1234"}));
    c.ok(rpc, "vitale.read", json!({}));
    c.refused(
        rpc,
        "cards.pin_status",
        json!({"cps_serial": "CPS-9999"}),
        1001,
        Some("cps"),
    );
}

/// Invalid parameters, each named.
fn invalid_parameters(c: &mut Conformance, rpc: &mut Rpc, g: &Value) {
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
        ("fse.duplicate", json!({"id": 1, "reason": " "}), "reason"),
        ("lots.get", json!({"lot_id": 5}), "lot_id"),
        ("returns.list", json!({"limit": 0}), "limit"),
        ("fse.status", json!({"sheet": 0}), "sheet"),
        ("payments.list", json!({"from": "2026-12-01"}), "from"),
        ("queue.stats", json!({"x": 1}), "x"),
        ("fse.get", json!([1]), "params"),
    ] {
        c.refused(rpc, method, params, -32602, Some(field));
    }
}

/// Sheets: created once per idempotency key, listed a page at a time, refused by a rule;
/// returns the ids of the first two sheets (`a`, made with a key, and `b`).
fn sheets_once_per_key(c: &mut Conformance, rpc: &mut Rpc, g: &Value) -> (i64, i64) {
    // Sheets: created once per idempotency key, listed a page at a time, refused by a rule.
    let a = c.ok(
        rpc,
        "fse.create",
        json!({"act": g, "idempotency_key": "conformance-a"}),
    );
    let again = c.ok(
        rpc,
        "fse.create",
        json!({"act": g, "idempotency_key": "conformance-a"}),
    );
    assert_eq!(again["id"], a["id"], "the same key, the same sheet");
    // The same key with another request: refused, naming the sheet made with it.
    let e = c.refused(
        rpc,
        "fse.create",
        json!({"act": g, "tiers_payant": {"amo": true}, "idempotency_key": "conformance-a"}),
        1011,
        Some("idempotency_key"),
    );
    assert_eq!(e["data"]["sheet_id"], a["id"], "{e}");
    let a = a["id"].as_i64().unwrap();
    let b = c.ok(
        rpc,
        "fse.create",
        json!({"act": g, "tiers_payant": {"amo": true}}),
    )["id"]
        .as_i64()
        .unwrap();
    let e = c.refused(
        rpc,
        "fse.create",
        json!({"act": {"code": "XYZ"}}),
        1010,
        Some("acts[0].code"),
    );
    assert_eq!(e["data"]["rule"], json!("UNKNOWN_ACT"), "{e}");
    long_values_are_cut(c, rpc, g);
    let got = c.ok(rpc, "fse.get", json!({"id": a}));
    assert_eq!(
        (got["state"].as_str(), &got["lot_id"]),
        (Some("accepted"), &Value::Null)
    );
    let page = c.ok(rpc, "fse.list", json!({"state": "accepted", "limit": 1}));
    assert_eq!(page[0]["id"], json!(a), "{page}");
    let next = c.ok(
        rpc,
        "fse.list",
        json!({"state": "accepted", "limit": 1, "after_id": a}),
    );
    assert_eq!(next[0]["id"], json!(b), "{next}");
    c.refused(rpc, "fse.get", json!({"id": 999_999}), 1020, Some("id"));
    c.refused(
        rpc,
        "lots.get",
        json!({"lot_id": "810000000009-99999999"}),
        1020,
        Some("lot_id"),
    );
    c.refused(rpc, "fse.proof", json!({"id": a}), 1020, Some("id"));
    // Its paper duplicate, before any lot; none for a sheet that does not exist.
    let paper = c.ok(rpc, "fse.duplicate", json!({"id": a}));
    assert_eq!((&paper["id"], &paper["lot_id"]), (&json!(a), &Value::Null));
    c.refused(
        rpc,
        "fse.duplicate",
        json!({"id": 999_999}),
        1020,
        Some("id"),
    );
    // A supporting document: text (base64 of "hello") refused by type, a minimal PDF
    // ("%PDF-1.4\n%%EOF\n") stored.
    let e = c.refused(
        rpc,
        "fse.attach",
        json!({"id": a, "kind": "prescription", "content": "aGVsbG8=", "name": "rx.pdf"}),
        1053,
        Some("content"),
    );
    assert_eq!(e["data"]["reason"], json!("type"), "{e}");
    let doc = c.ok(
        rpc,
        "fse.attach",
        json!({"id": a, "kind": "other", "content": "JVBERi0xLjQKJSVFT0YK"}),
    );
    assert_eq!(doc["media_type"], json!("application/pdf"), "{doc}");
    let e = c.refused(rpc, "fse.resubmit", json!({"id": a}), 1010, Some("id"));
    assert_eq!(e["data"]["rule"], json!("NOT_REJECTED"), "{e}");

    (a, b)
}

/// A refused value of 5,000 characters is echoed cut to 200, then `…`, whichever check
/// refuses it.
fn long_values_are_cut(c: &mut Conformance, rpc: &mut Rpc, g: &Value) {
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
}

/// The database locked by another process: the cancellation fails, nothing changes. Returns
/// the test's own connection to the database and the cancelled sheet's id.
fn database_locked(
    c: &mut Conformance,
    rpc: &mut Rpc,
    dir: &Path,
    g: &Value,
) -> (rusqlite::Connection, i64) {
    // The database locked by another process: the cancellation fails, nothing changes.
    let cancelled = c.ok(rpc, "fse.create", json!({"act": g}))["id"]
        .as_i64()
        .unwrap();
    let db = rusqlite::Connection::open(dir.join("fsed.db")).unwrap();
    db.busy_timeout(Duration::from_secs(20)).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    c.refused(
        rpc,
        "fse.cancel",
        json!({"id": cancelled, "reason": "patient left"}),
        1030,
        None,
    );
    db.execute_batch("ROLLBACK").unwrap();
    let row = c.ok(
        rpc,
        "fse.cancel",
        json!({"id": cancelled, "reason": "patient left"}),
    );
    assert_eq!(row["reason"], json!("patient left"));

    (db, cancelled)
}

/// Lots: the first one rejected, its sheet sent again, then acknowledged and paid.
fn lots_rejected_then_paid(c: &mut Conformance, rpc: &mut Rpc, a: i64) {
    // Lots: the first one rejected, its sheet sent again, then acknowledged and paid.
    c.ok(rpc, "lots.close", json!({}));
    wait_for("the first lot's rejection", Duration::from_secs(30), || {
        let s = rpc.ok("fse.get", json!({"id": a}));
        (s["state"] == json!("rejected")).then_some(())
    });
    let e = c.refused(
        rpc,
        "fse.cancel",
        json!({"id": a, "reason": "too late"}),
        1010,
        Some("id"),
    );
    assert_eq!(e["data"]["rule"], json!("NOT_CANCELLABLE"), "{e}");
    let again = c.ok(rpc, "fse.resubmit", json!({"id": a}));
    assert_eq!(again["state"], json!("accepted"));
    c.ok(
        rpc,
        "lots.close",
        json!({"practitioner_id": "810000000009"}),
    );
    c.ok(rpc, "transmit.now", json!({}));
    wait_for("the second lot's payment", Duration::from_secs(30), || {
        let s = rpc.ok("fse.get", json!({"id": a}));
        (s["state"] == json!("paid")).then_some(())
    });
    let stored = c.ok(rpc, "fse.get", json!({"id": a}));
    let lot_id = stored["lot_id"].as_str().unwrap().to_string();
    let lots = c.ok(rpc, "lots.list", json!({}));
    assert_eq!(lots.as_array().unwrap().len(), 2, "{lots}");
    let lot = c.ok(rpc, "lots.get", json!({"lot_id": lot_id}));
    assert_eq!(lot["sheet_ids"], json!([a]), "{lot}");
    let proof = c.ok(rpc, "fse.proof", json!({"id": a}));
    assert!(proof["signer_certificate"].is_string(), "{proof}");
    let returns = c.ok(rpc, "returns.list", json!({}));
    assert_eq!(returns["arls"].as_array().unwrap().len(), 2, "{returns}");
    assert_eq!(
        returns["payments"][0]["outcome"],
        json!("paid"),
        "{returns}"
    );
    let of_lot = c.ok(rpc, "returns.list", json!({"lot_id": lot_id, "limit": 10}));
    assert_eq!(of_lot["arls"][0]["status"], json!("positive"), "{of_lot}");
    // Paid, acknowledged: sending it again would be a duplicate.
    let status = c.ok(rpc, "fse.status", json!({"sheet": a}));
    assert_eq!(status["resend_safe"]["safe"], json!(false), "{status}");
    assert_eq!(status["lot"]["id"], json!(lot_id), "{status}");
    c.refused(
        rpc,
        "fse.status",
        json!({"sheet": 999_999}),
        1020,
        Some("sheet"),
    );
    // The patient paid this sheet (no tiers payant): no late-payment rule applies to it, and
    // the listing (sheets in AMO tiers payant only) is empty.
    assert_eq!(status["late_payment"], Value::Null, "{status}");
    let payments = c.ok(rpc, "payments.list", json!({"overdue_only": false}));
    assert_eq!(payments["sheets"], json!([]), "{payments}");
    assert_eq!(payments["totals"], json!([]), "{payments}");
}

/// The doctor's checks, the queue's counts, and a copy of the database.
fn doctor_stats_and_backup(c: &mut Conformance, rpc: &mut Rpc, dir: &Path) {
    let doctor = c.ok(rpc, "system.doctor", json!({}));
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
    let stats = c.ok(rpc, "queue.stats", json!({}));
    assert_eq!(
        (&stats["sheets"]["paid"], &stats["sheets"]["rejected"]),
        (&json!(1), &json!(1)),
        "{stats}"
    );
    // A copy of the database, holding what the database holds.
    let copy = dir.join("backup.db");
    let backup = c.ok(rpc, "queue.backup", json!({"path": copy.to_str().unwrap()}));
    assert_eq!(backup["sheets"], stats["sheets"], "{backup}");
    assert!(copy.is_file());
    c.refused(
        rpc,
        "queue.backup",
        json!({"path": "backup.db"}),
        -32602,
        Some("path"),
    );
}
