//! One practice on a LAN (issue 21): three workstations, each in its own network namespace
//! ([`common::netns::Lan`]) with its own fsed and simulated cards.
//!
//! - Reception (workstation 0) holds the patient's Vitale card and, for the lot signature,
//!   doctor B's CPS; its fsed listens on the network (mutual TLS) and enrolls the two desks.
//! - Doctor A (workstation 1) and doctor B (workstation 2) make sheets at their desks with their
//!   own CPS; the Vitale card at reception vouches for the patient's presence on them.
//!
//! Then: the link of doctor A cut in the middle of a proof of presence (the sheet refused with
//! `CARD_UNREACHABLE`, nothing stored; restored, the same request makes one sheet); doctor B's
//! lot signed on his CPS at reception with the link cut in the middle of the signature (the
//! lot waits, then is signed once: the card signs once); doctor A's workstation revoked,
//! refused at the handshake. And the fairness run: three programs on each of the three
//! workstations sharing reception's CPS over mutual TLS for 60 s.
//!
//! Reception's cards are slowed down where a cut must land inside an operation: each takes 3 s
//! to sign (a proof of presence, a lot); the simulator counts a command when it arrives
//! (`received`), so the test cuts once the card has it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use fse_simulator::card_load::CardLoadReport;
use serde_json::{json, Value};

use crate::common::netns::Lan;
use crate::common::{self, order, wait_for, Proc, Rpc};

/// Doctor A's CPS (the simulator's default) and doctor B's.
const CPS_A: &str = "cps-medecin-generaliste";
const CPS_B: &str = "cps-medecin-specialiste";

/// A card counter of a slot of a simulator (`received`, `signatures`, `authentications`…).
fn count(control: &Path, slot: &str, what: &str) -> u64 {
    order(control, &["stats", "--slot", slot])[what]
        .as_u64()
        .unwrap_or_else(|| panic!("no {what} in the stats of {slot}"))
}

/// A card simulator inside workstation `i` on slot `slot` of the fsed in `dir`, with its own
/// control socket and pace.
fn cards(
    lan: &Lan,
    i: usize,
    dir: &Path,
    slot: &str,
    profile: &str,
    pace: &[&str],
) -> (Proc, PathBuf) {
    let control = dir.join(format!("{slot}.control.sock"));
    let (cps, vitale) = match slot {
        "cps" => (profile, "none"),
        _ => ("none", profile),
    };
    let socket = common::virtual_slot(dir, usize::from(slot != "cps"));
    let socket_flag = if slot == "cps" {
        "--cps-socket"
    } else {
        "--vitale-socket"
    };
    let mut args = vec![
        "cards",
        "--control",
        control.to_str().unwrap(),
        socket_flag,
        socket.to_str().unwrap(),
        "--cps-profile",
        cps,
        "--vitale-profile",
        vitale,
    ];
    args.extend_from_slice(pace);
    let mut sim = Proc::start_in(&lan.prefix(i), "fse-sim", &args);
    sim.wait_line("cards ready", Duration::from_secs(30));
    (sim, control)
}

/// The serial of a built-in CPS profile.
fn cps_serial(profile: &str) -> String {
    match fse_simulator::profiles::Profile::load(profile) {
        Ok(fse_simulator::profiles::Profile::Cps(c)) => c.serial,
        _ => panic!("{profile} is no CPS profile"),
    }
}

/// The serial of the card of `kind` this fsed lists at `fsed` (`local` or a remote's name).
fn serial_at(rpc: &mut Rpc, kind: &str, fsed: &str) -> Option<String> {
    let listed = rpc.ok("cards.list", json!({}));
    listed.as_array()?.iter().find_map(|c| {
        (c["kind"] == kind && c["location"]["fsed"] == fsed)
            .then(|| c["serial"].as_str().unwrap_or_default().to_string())
    })
}

/// Reception's configuration: the network API on its address, the desks' rights.
fn reception_config(lan: &Lan, api: u16, enroll: u16, cps_b: &str) -> String {
    let ip = lan.address(0);
    let desk = r#"methods = ["cards.list", "cards.authenticate", "cards.pin_status", "events.subscribe", "system.version"]"#;
    format!(
        "[network]\nlisten = \"{ip}:{api}\"\nenroll_listen = \"{ip}:{enroll}\"\n\n\
         [network.workstations.doctor-a]\n{desk}\ncps = [\"{cps_b}\"]\n\n\
         [network.workstations.doctor-b]\nmethods = [\"cards.list\", \"cards.authenticate\", \"cards.sign\", \"cards.pin_status\", \"events.subscribe\", \"system.version\"]\ncps = [\"{cps_b}\"]\n\n\
         [network.workstations.reception]\n{desk}\ncps = [\"{cps_b}\"]\n"
    )
}

/// Enrolls workstation `i` under `name` at reception: a code made on reception's socket, the
/// exchange run by `fsectl enroll` inside the workstation; the identity written to `out`.
fn enroll(lan: &Lan, reception: &mut Rpc, i: usize, name: &str, enroll_port: u16, out: &Path) {
    let paired = reception.ok("workstations.pair", json!({"name": name}));
    let code = paired["code"].as_str().unwrap();
    let at = lan.route(i, 0, enroll_port).to_string();
    let done = lan
        .command(i, common::bin("fsectl"))
        .args(["enroll", "--host", &at, "--name", name, "--code", code])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        done.status.success(),
        "fsectl enroll {name}: {}{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
}

/// A doctor's fsed inside workstation `i`: his CPS at his desk, reception's cards through the
/// network with the identity enrolled in its state directory.
fn doctor(lan: &Lan, i: usize, dir: &Path, api: u16, cps: &str) -> (Proc, Rpc, Proc, PathBuf) {
    let address = lan.route(i, 0, api);
    let config = format!(
        "[remote]\ntimeout_ms = 4000\n\n[[remote.fsed]]\nname = \"reception\"\naddress = \"{address}\"\n"
    );
    let (fsed, mut rpc) = lan.start_fsed(i, dir, 2, &config, &[]);
    let (sim, control) = cards(
        lan,
        i,
        dir,
        "cps",
        cps,
        &["--latency-ms", "0", "--signature-latency-ms", "0"],
    );
    wait_for(
        "the doctor's CPS and reception's Vitale card",
        Duration::from_secs(60),
        || {
            (serial_at(&mut rpc, "cps", "local").is_some()
                && serial_at(&mut rpc, "vitale", "reception").is_some())
            .then_some(())
        },
    );
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    (fsed, rpc, sim, control)
}

/// A secured sheet at a doctor's desk, its proof of presence made by the Vitale card at
/// reception and verified.
fn sheet_with_receptions_card(rpc: &mut Rpc, key: &str, vitale: &str) -> Value {
    let made = rpc.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "beneficiary": 0, "idempotency_key": key}),
    );
    let sheet: fse_formats::fse::CareSheet = serde_json::from_value(made["sheet"].clone()).unwrap();
    let presence = sheet.presence.as_ref().expect("a proof of presence");
    assert_eq!(presence.vitale_serial, vitale);
    sheet.verify_presence().expect("the proof verifies");
    made
}

/// How many sheets a fsed holds.
fn sheets(rpc: &mut Rpc) -> usize {
    rpc.ok("fse.list", json!({"limit": 1000}))
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn reception_s_vitale_card_serves_two_doctors_through_cuts_and_a_revocation() {
    let lan = Lan::new(3);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (api, enroll_port) = (lan.listen_port(0), lan.listen_port(0));
    // Reception: the Vitale card (slowed), doctor B's CPS (its signatures slowed).
    let r = dirs[0].path();
    let cps_b = cps_serial(CPS_B);
    let (_reception, mut rec) = lan.start_fsed(
        0,
        r,
        2,
        &reception_config(&lan, api, enroll_port, &cps_b),
        &[],
    );
    let (_rec_cps, rec_cps) = cards(
        &lan,
        0,
        r,
        "cps",
        CPS_B,
        &["--latency-ms", "0", "--signature-latency-ms", "3000"],
    );
    let (_rec_vitale, rec_vitale) = cards(
        &lan,
        0,
        r,
        "vitale",
        "vitale-famille",
        &["--latency-ms", "0", "--signature-latency-ms", "3000"],
    );
    common::wait_cards(&mut rec, 2);
    let vitale = serial_at(&mut rec, "vitale", "local").unwrap();

    // The desks enroll, then start their fseds with the identity in their state directories.
    for (i, name) in [(1, "doctor-a"), (2, "doctor-b")] {
        let out = dirs[i].path().join("network").join("identity");
        enroll(&lan, &mut rec, i, name, enroll_port, &out);
    }
    let (_a, mut doc_a, _a_cards, _) = doctor(&lan, 1, dirs[1].path(), api, CPS_A);
    let (_b, mut doc_b, _b_cards, b_control) = doctor(&lan, 2, dirs[2].path(), api, CPS_B);

    // Both doctors' sheets proven by reception's card.
    sheet_with_receptions_card(&mut doc_a, "a-1", &vitale);
    sheet_with_receptions_card(&mut doc_b, "b-1", &vitale);

    let a_socket = dirs[1].path().join("fsed.sock");
    presence_cut_in_the_middle(&lan, &mut doc_a, a_socket, &rec_vitale, &vitale);
    lot_signature_cut_in_the_middle(&lan, &mut rec, &mut doc_b, &rec_cps, &b_control);

    card_events_cross_the_network(&mut rec, dirs[2].path(), &rec_vitale);

    // Doctor A's workstation revoked: its link is refused at the handshake from now on.
    let revoked = rec.ok("workstations.revoke", json!({"name": "doctor-a"}));
    assert_eq!(revoked["revoked"], json!(1), "{revoked}");
    wait_for("doctor A's link refused", Duration::from_secs(60), || {
        serial_at(&mut doc_a, "vitale", "reception")
            .is_none()
            .then_some(())
    });
    let refused = doc_a.call(
        "fse.create",
        json!({"act": {"code": "G"}, "beneficiary": 0, "idempotency_key": "a-revoked"}),
    );
    assert!(
        refused.get("error").is_some(),
        "a revoked desk still used the card: {refused}"
    );
    let report = doc_a.ok("system.doctor", json!({}));
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "remote_cards")
        .cloned()
        .unwrap();
    assert_eq!(check["status"], "warning", "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains("out of reach"),
        "{check}"
    );
    let listed = rec.ok("workstations.list", json!({}));
    let a = listed["workstations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "doctor-a")
        .cloned()
        .unwrap();
    assert!(
        a["revoked_at"].is_string() && a["connected"] == json!(false),
        "{a}"
    );
}

/// Reception's Vitale card leaves its reader and comes back: both events reach doctor B's fsed
/// over the network, with where the card is.
fn card_events_cross_the_network(rec: &mut Rpc, doctor_b: &Path, rec_vitale: &Path) {
    let mut watcher = Rpc::connect(&doctor_b.join("fsed.sock"), Duration::from_secs(10));
    watcher.ok(
        "events.subscribe",
        json!({"events": ["card.removed", "card.inserted"]}),
    );
    order(rec_vitale, &["remove", "--slot", "vitale"]);
    // Reception's embedded virtual reader sees a card gone at its next exchange with it.
    rec.call("cards.authenticate", json!({"challenge": "07".repeat(32)}));
    let gone = watcher.wait_event("card.removed");
    assert_eq!(gone["location"]["fsed"], json!("reception"), "{gone}");
    order(
        rec_vitale,
        &["insert", "--slot", "vitale", "--profile", "vitale-famille"],
    );
    let back = watcher.wait_event("card.inserted");
    assert_eq!(back["location"]["fsed"], json!("reception"), "{back}");
    assert_eq!(back["kind"], json!("vitale"), "{back}");
}

/// Doctor A's link cut while reception's Vitale card makes the proof of presence of his sheet:
/// the sheet is refused with `CARD_UNREACHABLE` and nothing is stored; restored, the same
/// request makes the sheet, once.
fn presence_cut_in_the_middle(
    lan: &Lan,
    doc_a: &mut Rpc,
    a_socket: PathBuf,
    rec_vitale: &Path,
    vitale: &str,
) {
    let before = sheets(doc_a);
    let received = count(rec_vitale, "vitale", "received");
    let proofs = count(rec_vitale, "vitale", "authentications");
    let asking = std::thread::spawn(move || {
        let mut rpc = Rpc::connect(&a_socket, Duration::from_secs(10));
        rpc.call(
            "fse.create",
            json!({"act": {"code": "G"}, "beneficiary": 0, "idempotency_key": "a-cut"}),
        )
    });
    // The card has its INTERNAL AUTHENTICATE (3 s to answer): the link goes down in the middle.
    wait_for(
        "the proof of presence begun",
        Duration::from_secs(30),
        || (count(rec_vitale, "vitale", "received") > received).then_some(()),
    );
    lan.cut(1);
    let refused = asking.join().unwrap();
    assert_eq!(refused["error"]["code"], json!(1008), "{refused}");
    assert_eq!(
        refused["error"]["data"]["fsed"],
        json!("reception"),
        "{refused}"
    );
    assert_eq!(sheets(doc_a), before, "nothing stored");
    // The card did make the proof the cut lost: the cut came in the middle.
    wait_for("the lost proof made", Duration::from_secs(30), || {
        (count(rec_vitale, "vitale", "authentications") > proofs).then_some(())
    });
    lan.restore(1);
    wait_for("reception's card again", Duration::from_secs(90), || {
        serial_at(doc_a, "vitale", "reception")
            .is_some()
            .then_some(())
    });
    let made = sheet_with_receptions_card(doc_a, "a-cut", vitale);
    let again = doc_a.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "beneficiary": 0, "idempotency_key": "a-cut"}),
    );
    assert_eq!(
        again["id"], made["id"],
        "the same request is the same sheet"
    );
    assert_eq!(sheets(doc_a), before + 1, "one sheet, not two");
}

/// Doctor B's CPS goes from his desk to reception, where its PIN is verified; his lot is signed
/// there, the link cut in the middle of the card's signature: the lot waits, then is signed
/// with the signature made first: the card signs once.
fn lot_signature_cut_in_the_middle(
    lan: &Lan,
    rec: &mut Rpc,
    doc_b: &mut Rpc,
    rec_cps: &Path,
    b_control: &Path,
) {
    order(b_control, &["remove", "--slot", "cps"]);
    wait_for(
        "doctor B's CPS gone from his desk",
        Duration::from_secs(30),
        || {
            // The embedded virtual reader sees a card gone at its next exchange with it.
            doc_b.call("cards.pin_status", json!({}));
            serial_at(doc_b, "cps", "local").is_none().then_some(())
        },
    );
    let cps_b = serial_at(rec, "cps", "local").unwrap();
    rec.ok(
        "cards.verify_pin",
        json!({"pin": "1234", "cps_serial": cps_b}),
    );
    let signed = count(rec_cps, "cps", "signatures");
    let received = count(rec_cps, "cps", "received");
    doc_b.ok("lots.close", json!({}));
    // The card has the signature command (3 s to answer): the link goes down in the middle.
    wait_for("the lot signature begun", Duration::from_secs(30), || {
        (count(rec_cps, "cps", "received") > received).then_some(())
    });
    lan.cut(2);
    // The card finishes its signature; doctor B's request fails and the lot stays closed.
    wait_for("the card's signature made", Duration::from_secs(30), || {
        (count(rec_cps, "cps", "signatures") > signed).then_some(())
    });
    let lots = doc_b.ok("lots.list", json!({}));
    assert!(
        lots.as_array()
            .unwrap()
            .iter()
            .all(|l| l["state"] == "closed"),
        "no lot signed while cut: {lots}"
    );
    lan.restore(2);
    wait_for("doctor B's lot signed", Duration::from_secs(120), || {
        let lots = doc_b.ok("lots.list", json!({}));
        let all = lots.as_array().unwrap();
        (!all.is_empty() && all.iter().all(|l| l["state"] != "closed")).then_some(())
    });
    assert_eq!(
        count(rec_cps, "cps", "signatures"),
        signed + 1,
        "the card signed the lot once"
    );
}

#[test]
fn nine_programs_on_three_workstations_share_reception_s_cps_fairly() {
    let lan = Lan::new(3);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (api, enroll_port) = (lan.listen_port(0), lan.listen_port(0));
    let r = dirs[0].path();
    let cps = cps_serial(CPS_B);
    let (_reception, mut rec) = lan.start_fsed(
        0,
        r,
        2,
        &reception_config(&lan, api, enroll_port, &cps),
        &[],
    );
    let (_cps, _control) = cards(&lan, 0, r, "cps", CPS_B, &["--latency-ms", "2"]);
    common::wait_cards(&mut rec, 1);
    let names = ["reception", "doctor-a", "doctor-b"];
    let identities: Vec<PathBuf> = (0..3)
        .map(|i| {
            let out = dirs[i].path().join("identity");
            enroll(&lan, &mut rec, i, names[i], enroll_port, &out);
            out
        })
        .collect();
    // Three programs on each workstation, calling the CPS as fast as they are answered.
    let params = json!({ "cps_serial": cps }).to_string();
    let runs: Vec<_> = (0..3)
        .map(|i| {
            let report = dirs[i].path().join("load.json");
            let child = lan
                .command(i, common::bin("fse-sim"))
                .args([
                    "card-load",
                    "--clients",
                    "3",
                    "--secs",
                    "60",
                    "--method",
                    "cards.pin_status",
                ])
                .args(["--params", &params, "--label", names[i]])
                .args(["--host", &lan.route(i, 0, api).to_string()])
                .args(["--identity", identities[i].to_str().unwrap()])
                .args(["--json", report.to_str().unwrap()])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            (child, report)
        })
        .collect();
    let reports: Vec<CardLoadReport> = runs
        .into_iter()
        .map(|(mut child, report)| {
            assert!(child.wait().unwrap().success(), "fse-sim card-load failed");
            serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap()
        })
        .collect();
    let all = CardLoadReport::merge(reports).unwrap();
    assert_eq!(all.clients.len(), 9);
    for (client, share) in all.shares() {
        eprintln!("fairness: {client} share {share:.3} of equal");
        assert!(
            (0.8..=1.2).contains(&share),
            "{client}: {share:.3} of an equal share: {all:?}"
        );
    }
    let errors: u64 = all.clients.iter().map(|c| c.errors).sum();
    assert_eq!(errors, 0, "{all:?}");
    eprintln!(
        "fairness: {:.0} card operations/s through one CPS from 9 programs on 3 workstations, longest wait {:.1} ms",
        all.ops_per_sec, all.longest_wait_ms
    );
}
