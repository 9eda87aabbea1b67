//! One card shared by several clients, over fsed's embedded virtual reader and the simulated
//! cards: `cards.lock` holding another connection off until its lease ends (by expiry, by
//! `cards.unlock`, by the holder's connection closing), `CARD_BUSY` with its retry-after, a
//! signing session ended after its lots, a CPS pulled out during VERIFY (absent, no PIN try
//! spent), and the fairness of turns between 9 connections hammering one CPS for 60 s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{order, serials, start_fast_cards_on, start_fsed_virtual, wait_for, Proc, Rpc};
use fse_simulator::card_load::{self, CardLoadArgs, CardLoadReport};
use serde_json::{json, Value};

/// fsed on two virtual slots with `config`, the simulated CPS and Vitale card at full speed
/// (`cards` flags added), both cards seen.
fn start(dir: &Path, config: &str, cards: &[&str]) -> (Proc, Proc, Rpc) {
    let (fsed, mut rpc) = start_fsed_virtual(dir, 2, config, &[]);
    let (sim, _control) = start_fast_cards_on(dir, cards);
    common::wait_cards(&mut rpc, 2);
    (fsed, sim, rpc)
}

fn connect(dir: &Path) -> Rpc {
    Rpc::connect(&dir.join("fsed.sock"), Duration::from_secs(5))
}

fn error_name(reply: &Value) -> &str {
    reply["error"]["data"]["name"].as_str().unwrap_or("")
}

/// The CPS as `cards.list` shows it.
fn cps(rpc: &mut Rpc) -> Value {
    let list = rpc.ok("cards.list", json!({}));
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "cps")
        .cloned()
        .unwrap()
}

#[test]
fn a_lock_holds_another_client_off_until_its_lease_expires() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[cards]\nmax_wait_ms = 1500\nmax_lease_secs = 2\n";
    let (mut fsed, _sim, mut holder) = start(dir.path(), config, &[]);
    let mut other = connect(dir.path());
    let mut watcher = connect(dir.path());
    watcher.ok(
        "events.subscribe",
        json!({"events": ["card.session_ended"]}),
    );
    holder.ok("cards.verify_pin", json!({"pin": "1234"}));
    assert!(
        cps(&mut other)["session"].is_object(),
        "a session after the PIN"
    );

    let asked = Instant::now();
    let lock = holder.ok("cards.lock", json!({"card": "cps", "lease_secs": 60}));
    assert_eq!(lock["lease_secs"], 2, "capped by max_lease_secs: {lock}");
    assert_eq!(lock["card"], "cps");
    assert_eq!(lock["serial"], "CPS-0001");
    // Locking ended the signing session: the PIN is needed again.
    let ended = watcher.wait_event("card.session_ended");
    assert_eq!(ended["reason"], "locked", "{ended}");
    let shown = cps(&mut other);
    assert_eq!(shown["pin_verified"], false, "{shown}");
    assert!(shown["session"].is_null(), "{shown}");
    assert!(
        shown["locked_by"].as_str().unwrap().starts_with("local:"),
        "{shown}"
    );
    assert!(shown["lock_expires_at"].is_string(), "{shown}");

    // 2 s of lease left > 1.5 s of wait allowed: refused at once, retry after the lease left.
    let busy = other.call("cards.pin_status", json!({}));
    assert_eq!(error_name(&busy), "CARD_BUSY", "{busy}");
    let data = &busy["error"]["data"];
    assert_eq!(
        (data["card"].clone(), data["reason"].clone()),
        (json!("cps"), json!("lock"))
    );
    let retry = data["retry_after_ms"].as_u64().unwrap();
    assert!(retry > 1500 && retry <= 2000, "{busy}");
    let refused = other.call("cards.lock", json!({"card": "cps"}));
    assert_eq!(error_name(&refused), "CARD_BUSY", "{refused}");
    // The holder's own card work goes on.
    holder.ok("cards.pin_status", json!({}));

    // With less than 1.5 s of lease left the other client waits, and is served only once the
    // lease has ended: at least 2 s after the lock was asked.
    let left = Duration::from_secs(2).saturating_sub(asked.elapsed());
    std::thread::sleep(left.saturating_sub(Duration::from_millis(1000)));
    let status = other.ok("cards.pin_status", json!({}));
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "served before the lease ended"
    );
    assert_eq!(status["tries_left"], 3, "{status}");
    assert!(
        cps(&mut other).get("locked_by").is_none(),
        "the lease is over"
    );
    // Expired: nothing left to unlock.
    let late = holder.call("cards.unlock", json!({"lock": lock["lock"]}));
    assert_eq!(error_name(&late), "NOT_FOUND", "{late}");

    // Locked and unlocked again: the other client is served at once after the unlock.
    let lock = holder.ok("cards.lock", json!({"card": "cps"}));
    let unlocked = holder.ok("cards.unlock", json!({"lock": lock["lock"]}));
    assert_eq!(unlocked["unlocked"], true);
    other.ok("cards.pin_status", json!({}));
    assert!(fsed.terminate().success());
}

#[test]
fn a_lock_ends_when_its_connection_closes() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough a wait allowed that the other client waits for the 30 s lease.
    let config = "[cards]\nmax_wait_ms = 60000\nmax_lease_secs = 30\n";
    let (mut fsed, _sim, mut holder) = start(dir.path(), config, &[]);
    let lock = holder.ok("cards.lock", json!({"card": "vitale"}));
    assert_eq!(lock["lease_secs"], 30, "{lock}");
    let asked = Instant::now();
    let mut other = connect(dir.path());
    let list = other.ok("cards.list", json!({}));
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "vitale" && c["locked_by"].is_string()),
        "{list}"
    );
    let waiting = std::thread::spawn(move || {
        let r = other.call("vitale.read", json!({}));
        (r, other)
    });
    // The holder goes away (its connection closes) long before its 30 s are over.
    drop(holder);
    let (read, mut other) = waiting.join().unwrap();
    assert!(read.get("result").is_some(), "{read}");
    // Whether the read came before or after the close, the lease did not outlive it.
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "served when the holder left, not at the lease's end"
    );
    let list = other.ok("cards.list", json!({}));
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|c| c.get("locked_by").is_none()),
        "{list}"
    );
    assert!(fsed.terminate().success());
}

#[test]
fn a_signing_session_ends_after_its_lots() {
    let dir = tempfile::tempdir().unwrap();
    // One sheet a lot; 2 lots a session.
    let config = "[cards]\nsession_max_lots = 2\n[lots]\nmax_sheets = 1\n";
    let (mut fsed, _sim, mut rpc) = start(dir.path(), config, &[]);
    let mut watcher = connect(dir.path());
    watcher.ok(
        "events.subscribe",
        json!({"events": ["lot.signed", "card.session_ended"]}),
    );
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let session = cps(&mut rpc)["session"].clone();
    assert_eq!(session["lots_signed"], 0, "{session}");
    assert_eq!(session["lots_left"], 2, "{session}");

    rpc.ok("fse.create", json!({"act": {"code": "G"}}));
    watcher.wait_event("lot.signed");
    let session = cps(&mut rpc)["session"].clone();
    // 1 lot signed of 2: 1 left.
    assert_eq!(
        (session["lots_signed"].clone(), session["lots_left"].clone()),
        (json!(1), json!(1))
    );

    rpc.ok("fse.create", json!({"act": {"code": "G"}}));
    // The second lot is signed, and with it the session ends (the two events in either order:
    // the card thread announces the end as it signs, the batcher the lot once stored).
    let mut seen: Vec<Value> = (0..2)
        .map(|_| {
            watcher
                .next_line(Duration::from_secs(30))
                .expect("an event")["params"]
                .clone()
        })
        .collect();
    seen.sort_by_key(|e| e["event"].as_str().unwrap().to_owned());
    assert_eq!(seen[0]["event"], "card.session_ended", "{seen:?}");
    assert_eq!(seen[0]["reason"], "lots", "{seen:?}");
    assert_eq!(seen[0]["serial"], "CPS-0001", "{seen:?}");
    assert_eq!(seen[1]["event"], "lot.signed", "{seen:?}");
    let shown = cps(&mut rpc);
    assert!(shown["session"].is_null(), "{shown}");
    assert_eq!(shown["pin_verified"], false, "{shown}");

    // The card forgot its PIN too; a new sheet needs the PIN again, which opens a new session.
    let st = rpc.ok("cards.pin_status", json!({}));
    assert_eq!(
        (st["verified"].clone(), st["tries_left"].clone()),
        (json!(false), json!(3)),
        "{st}"
    );
    let refused = rpc.call("fse.create", json!({"act": {"code": "G"}}));
    assert_eq!(error_name(&refused), "PIN_REQUIRED", "{refused}");
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    assert_eq!(cps(&mut rpc)["session"]["lots_signed"], 0);
    rpc.ok("fse.create", json!({"act": {"code": "G"}}));
    let signed = watcher.wait_event("lot.signed");
    assert!(
        signed["lot_id"].as_str().unwrap().ends_with("00000003"),
        "{signed}"
    );
    assert!(fsed.terminate().success());
}

#[test]
fn a_cps_pulled_out_during_verify_is_absent_and_spends_no_try() {
    let dir = tempfile::tempdir().unwrap();
    let (mut fsed, _sim, mut rpc) = start(dir.path(), "", &["--pin-latency-ms", "3000"]);
    let control = dir.path().join("control.sock");
    let st = rpc.ok("cards.pin_status", json!({}));
    assert_eq!(st["tries_left"], 3, "{st}");
    let mut caller = connect(dir.path());
    let verify =
        std::thread::spawn(move || caller.call("cards.verify_pin", json!({"pin": "0000"})));
    // Well within the card's 3 s on the PIN: the link is cut mid-command.
    std::thread::sleep(Duration::from_millis(1000));
    order(&control, &["remove", "--slot", "cps"]);
    let r = verify.join().unwrap();
    assert_eq!(error_name(&r), "CARD_ABSENT", "{r}");
    assert!(r["error"]["data"].get("tries_left").is_none(), "{r}");
    let stats = order(&control, &["stats", "--slot", "cps"]);
    assert_eq!(
        stats["verifies"], 0,
        "the card never checked the PIN: {stats}"
    );

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
    wait_for("the CPS back", Duration::from_secs(30), || {
        serials(&mut rpc)
            .iter()
            .any(|(k, _)| k == "cps")
            .then_some(())
    });
    let st = rpc.ok("cards.pin_status", json!({}));
    assert_eq!(st["tries_left"], 3, "no try spent, none replayed: {st}");
    let stats = order(&control, &["stats", "--slot", "cps"]);
    assert_eq!(stats["verifies"], 0, "no PIN replayed: {stats}");
    assert!(fsed.terminate().success());
}

/// `clients` clients, each connected by `connect(i)`, send `cards.pin_status` (one card
/// operation, always the same) to the one CPS as fast as they can for `secs`
/// (`fse_simulator::card_load`); each client's share of the card's time (its completed
/// operations, all alike) must be within ±20 % of an equal share. Returns the run's report.
pub fn fairness(
    connect: impl Fn(usize) -> fsed_client::Client,
    clients: usize,
    secs: u64,
) -> CardLoadReport {
    let args = CardLoadArgs {
        socket: PathBuf::new(),
        host: None,
        identity: None,
        clients,
        secs: secs as f64,
        method: "cards.pin_status".into(),
        params: "{}".into(),
        label: "local".into(),
        json: None,
    };
    let report = card_load::run_with(&args, |i| Ok(connect(i))).unwrap();
    for (client, share) in report.shares() {
        assert!(
            (0.8..=1.2).contains(&share),
            "{client}: {share:.3} of an equal share: {report:?}"
        );
    }
    report
}

#[test]
fn nine_local_clients_share_one_cps_fairly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut fsed, _sim, _rpc) = start(dir.path(), "", &[]);
    let socket = dir.path().join("fsed.sock");
    let run = fairness(|_| fsed_client::Client::connect(&socket).unwrap(), 9, 60);
    let ops: Vec<u64> = run.clients.iter().map(|c| c.ops).collect();
    assert!(ops.iter().sum::<u64>() > 0);
    println!(
        "fairness, 9 local clients, 60 s: {:.0} pin_status/s, per client {ops:?}, longest wait {:.1} ms",
        run.ops_per_sec, run.longest_wait_ms
    );
    assert!(fsed.terminate().success());
}
