//! `fse.create` latency with the patient's Vitale card on another fsed (reception, in another
//! network namespace, over mutual TLS) against the same with the Vitale card in the doctor's
//! own reader, in the same run: two fseds at the doctor's workstation (one with both cards,
//! one with its CPS only and reception's Vitale card through the network), asked in turns,
//! rounds of each alternating. The simulated cards answer at once (no card pace), so what is
//! measured is fsed and the link. `cargo build --release --workspace --bins && cargo bench -p
//! fsed_tests --bench remote` (as root: it makes network namespaces).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::netns::Lan;
use common::{Proc, Rpc};
use serde_json::json;

/// Sheets per round, and rounds of each.
const PER_ROUND: usize = 100;
const ROUNDS: usize = 5;

/// A card simulator on the two slots of the fsed in `dir`, inside workstation `i`, at once.
fn cards(lan: &Lan, i: usize, dir: &Path, cps: &str, vitale: &str) -> Proc {
    let control = dir.join("control.sock");
    let (cps_slot, vitale_slot) = (common::virtual_slot(dir, 0), common::virtual_slot(dir, 1));
    let mut sim = Proc::start_in(
        &lan.prefix(i),
        "fse-sim",
        &[
            "cards",
            "--control",
            control.to_str().unwrap(),
            "--cps-socket",
            cps_slot.to_str().unwrap(),
            "--vitale-socket",
            vitale_slot.to_str().unwrap(),
            "--cps-profile",
            cps,
            "--vitale-profile",
            vitale,
            "--latency-ms",
            "0",
            "--signature-latency-ms",
            "0",
        ],
    );
    sim.wait_line("cards ready", Duration::from_secs(30));
    sim
}

/// Whether this fsed lists a Vitale card at `fsed` (`local` or the remote's name).
fn has_vitale(rpc: &mut Rpc, fsed: &str) -> bool {
    let listed = rpc.ok("cards.list", json!({}));
    listed
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["kind"] == "vitale" && c["location"]["fsed"] == fsed)
}

/// `n` secured sheets, one at a time; each one's latency.
fn sheets(rpc: &mut Rpc, tag: &str, round: usize, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|k| {
            let t = Instant::now();
            rpc.ok(
                "fse.create",
                json!({"act": {"code": "G"}, "beneficiary": 0, "idempotency_key": format!("{tag}-{round}-{k}")}),
            );
            t.elapsed()
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let lan = Lan::new(2);
    let (reception_dir, local_dir, remote_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (api, enroll_port) = (lan.listen_port(0), lan.listen_port(0));
    let ip = lan.address(0);
    let config = format!(
        "[network]\nlisten = \"{ip}:{api}\"\nenroll_listen = \"{ip}:{enroll_port}\"\n\n\
         [network.workstations.doctor]\nmethods = [\"cards.list\", \"cards.authenticate\", \"events.subscribe\"]\n"
    );
    let (_reception, mut rec) =
        common::start_fsed_virtual_in(&lan.prefix(0), reception_dir.path(), 2, &config, &[]);
    let _rec_cards = cards(&lan, 0, reception_dir.path(), "none", "vitale-famille");
    common::wait_cards(&mut rec, 1);

    // The doctor's desk: one fsed with both cards, one with its CPS and reception's Vitale card.
    let (_local, mut local) =
        common::start_fsed_virtual_in(&lan.prefix(1), local_dir.path(), 2, "", &[]);
    let _local_cards = cards(
        &lan,
        1,
        local_dir.path(),
        "cps-medecin-generaliste",
        "vitale-famille",
    );
    let paired = rec.ok("workstations.pair", json!({"name": "doctor"}));
    let identity = remote_dir.path().join("network").join("identity");
    let enrolled = lan
        .command(1, common::bin("fsectl"))
        .args([
            "enroll",
            "--host",
            &lan.route(1, 0, enroll_port).to_string(),
        ])
        .args([
            "--name",
            "doctor",
            "--code",
            paired["code"].as_str().unwrap(),
        ])
        .args(["--out", identity.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(enrolled.status.success(), "{enrolled:?}");
    let remote_config = format!(
        "[[remote.fsed]]\nname = \"reception\"\naddress = \"{}\"\n",
        lan.route(1, 0, api)
    );
    let (_remote, mut remote) =
        common::start_fsed_virtual_in(&lan.prefix(1), remote_dir.path(), 2, &remote_config, &[]);
    let _remote_cards = cards(
        &lan,
        1,
        remote_dir.path(),
        "cps-medecin-generaliste",
        "none",
    );
    common::wait_for("the cards", Duration::from_secs(60), || {
        (has_vitale(&mut local, "local") && has_vitale(&mut remote, "reception")).then_some(())
    });
    for rpc in [&mut local, &mut remote] {
        rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
        // Warm-up: the first sheets open the history and the link's first exchanges.
        sheets(rpc, "warm", 0, 20);
    }

    let (mut here, mut there) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        here.extend(sheets(&mut local, "local", round, PER_ROUND));
        there.extend(sheets(&mut remote, "remote", round, PER_ROUND));
    }
    here.sort();
    there.sort();
    println!(
        "fse.create, {} secured sheets each, alternating rounds of {PER_ROUND} ({} mode):",
        here.len(),
        match lan.mode() {
            common::netns::LanMode::Namespaces => "network namespaces",
            common::netns::LanMode::Loopback => "loopback relays",
        }
    );
    for (name, v) in [
        ("Vitale card in the doctor's reader", &here),
        ("Vitale card at reception (mTLS)", &there),
    ] {
        println!(
            "  {name:36} p50 {:6.2} ms  p95 {:6.2} ms  p99 {:6.2} ms  max {:6.2} ms",
            percentile(v, 0.5),
            percentile(v, 0.95),
            percentile(v, 0.99),
            percentile(v, 1.0)
        );
    }
    println!(
        "  the network hop adds {:.2} ms at the median",
        percentile(&there, 0.5) - percentile(&here, 0.5)
    );
    raw_proofs(&lan, remote_dir.path(), api, &identity);
}

/// The limit the hop is compared with: the proof of presence alone, asked of reception over
/// mutual TLS from the doctor's workstation (1), one request at a time for 5 s.
fn raw_proofs(lan: &Lan, dir: &Path, api: u16, identity: &Path) {
    let report = dir.join("raw.json");
    let raw = lan
        .command(1, common::bin("fse-sim"))
        .args(["card-load", "--clients", "1", "--secs", "5"])
        .args(["--method", "cards.authenticate"])
        .args([
            "--params",
            &json!({"challenge": "07".repeat(32)}).to_string(),
        ])
        .args(["--host", &lan.route(1, 0, api).to_string()])
        .args(["--identity", identity.to_str().unwrap()])
        .args(["--json", report.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(raw.status.success(), "{raw:?}");
    let raw: fse_simulator::card_load::CardLoadReport =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    println!(
        "  raw cards.authenticate over mTLS from the desk: {:.0}/s, mean {:.2} ms ({} requests, {} errors)",
        raw.ops_per_sec, raw.clients[0].mean_ms, raw.clients[0].ops, raw.clients[0].errors
    );
}
