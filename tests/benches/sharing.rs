//! Card operations per second through one shared CPS: 1 client against 9 clients
//! (`cards.pin_status`, a SELECT and a VERIFY without data, as fast as each client can), with
//! the simulated card at full speed and at its default pace (20 ms an APDU); and how evenly the
//! 9 clients were served. fsed on its embedded virtual reader, no pcscd:
//! `cargo bench -p fsed_tests --bench sharing`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, Kill};
use serde_json::json;

/// How long each run lasts.
const RUN: Duration = Duration::from_secs(10);

/// fsed on two Unix-socket virtual slots in `dir` and the simulated cards at `latency_ms` an
/// APDU; returns both and fsed's socket once both cards are listed.
fn start(dir: &Path, latency_ms: u64) -> (Kill, Kill, std::path::PathBuf) {
    let trust = dir.join("trust");
    assert!(Command::new(bin("fse-sim"))
        .args(["pki", "--out", trust.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let socket = dir.join("fsed.sock");
    let (cps, vitale) = (dir.join("cps.vpcd"), dir.join("vitale.vpcd"));
    let fsed = Kill(
        Command::new(bin("fsed"))
            .args([
                "--config",
                "/dev/null",
                "--state-dir",
                dir.to_str().unwrap(),
            ])
            .args(["--socket", socket.to_str().unwrap(), "--cards", "virtual"])
            .args(["--virtual-slot", &format!("unix:{}", cps.display())])
            .args(["--virtual-slot", &format!("unix:{}", vitale.display())])
            .args([
                "--trust-dir",
                trust.to_str().unwrap(),
                "--transport",
                "spool",
            ])
            .env("FSED_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let latency = latency_ms.to_string();
    let cards = Kill(
        Command::new(bin("fse-sim"))
            .args([
                "cards",
                "--control",
                dir.join("control.sock").to_str().unwrap(),
            ])
            .args(["--latency-ms", &latency, "--signature-latency-ms", &latency])
            .args(["--cps-socket", cps.to_str().unwrap()])
            .args(["--vitale-socket", vitale.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = fsed_client::Client::connect(&socket)
            .and_then(|mut c| c.call("cards.list", json!({})))
            .map(|l| l.as_array().map_or(0, Vec::len))
            .unwrap_or(0);
        if listed == 2 {
            break;
        }
        assert!(Instant::now() < end, "the cards were not seen");
        std::thread::sleep(Duration::from_millis(100));
    }
    (fsed, cards, socket)
}

/// `clients` connections sending `cards.pin_status` for [`RUN`] (`fse_simulator::card_load`):
/// operations per client and the longest wait for one answer.
fn run(socket: &Path, clients: usize) -> (Vec<u64>, Duration) {
    let args = fse_simulator::card_load::CardLoadArgs {
        socket: socket.to_path_buf(),
        host: None,
        identity: None,
        clients,
        secs: RUN.as_secs_f64(),
        method: "cards.pin_status".into(),
        params: "{}".into(),
        label: "bench".into(),
        json: None,
    };
    let report = fse_simulator::card_load::run(&args).unwrap();
    (
        report.clients.iter().map(|c| c.ops).collect(),
        Duration::from_secs_f64(report.longest_wait_ms / 1e3),
    )
}

fn main() {
    for latency_ms in [0, 20] {
        let dir = std::env::temp_dir().join(format!(
            "fsed-bench-sharing-{}-{latency_ms}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (_fsed, _cards, socket) = start(&dir, latency_ms);
        let (one, one_wait) = run(&socket, 1);
        let (nine, nine_wait) = run(&socket, 9);
        let rate = |ops: &[u64]| ops.iter().sum::<u64>() as f64 / RUN.as_secs_f64();
        let (min, max) = (nine.iter().min().unwrap(), nine.iter().max().unwrap());
        let mean = nine.iter().sum::<u64>() as f64 / 9.0;
        println!(
            "card at {latency_ms:>2} ms/APDU: 1 client {:>8.0} ops/s (longest wait {:.1} ms) | \
             9 clients {:>8.0} ops/s = {:.2}x (per client {:.1}-{:.1}, {:+.1}%..{:+.1}% of equal; \
             longest wait {:.1} ms)",
            rate(&one),
            one_wait.as_secs_f64() * 1e3,
            rate(&nine),
            rate(&nine) / rate(&one),
            *min as f64 / RUN.as_secs_f64(),
            *max as f64 / RUN.as_secs_f64(),
            (*min as f64 / mean - 1.0) * 100.0,
            (*max as f64 / mean - 1.0) * 100.0,
            nine_wait.as_secs_f64() * 1e3,
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
