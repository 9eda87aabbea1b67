//! End to end, on the real parts: `fse-sim practice` drives fsed (embedded
//! virtual reader ⇄ `fse-sim cards` at full speed, SQLite, RabbitMQ) and
//! measures
//! 1. sheets per second from the first `fse.create` until the last sheet's
//!    lot is confirmed by the broker, with 64 clients (an insurer queue is
//!    bound but its consumer idles, so that answering lots takes no CPU from
//!    the run; the queue is deleted afterwards);
//! 2. the create → ARL latency at a moderate load (16 practices, 500
//!    sheets/s, the insurer simulator answering).
//!
//! Needs the release binaries (`cargo build --release --workspace --bins`)
//! and RabbitMQ on 127.0.0.1:5672 (`tests/run` starts it). Run:
//! `cargo bench -p fsed_tests --bench e2e`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bin, Kill};

const AMQP: &str = "amqp://127.0.0.1:5672/%2f";

/// Starts fsed with its virtual reader on `port` and `port + 1`, the cards, and an insurer
/// (with `insurer_args`) in `dir`; returns them and fsed's socket.
fn start(
    dir: &std::path::Path,
    port: u16,
    binding: &str,
    insurer_args: &[&str],
) -> (Vec<Kill>, std::path::PathBuf) {
    let trust = dir.join("trust");
    assert!(Command::new(bin("fse-sim"))
        .args(["pki", "--out", trust.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let socket = dir.join("fsed.sock");
    let mut insurer = vec!["insurer", "--amqp", AMQP, "--binding", binding];
    insurer.extend_from_slice(insurer_args);
    let insurer = Kill(
        Command::new(bin("fse-sim"))
            .args(&insurer)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (cps, vitale) = (
        format!("127.0.0.1:{port}"),
        format!("127.0.0.1:{}", port + 1),
    );
    let fsed = Kill(
        Command::new(bin("fsed"))
            .args([
                "--config",
                "/dev/null",
                "--state-dir",
                dir.to_str().unwrap(),
                "--socket",
                socket.to_str().unwrap(),
                "--cards",
                "virtual",
                "--virtual-slot",
                &cps,
                "--virtual-slot",
                &vitale,
                "--trust-dir",
                trust.to_str().unwrap(),
                "--transport",
                "amqp",
                "--return-queue",
                &format!("fsed.returns.bench.{binding}"),
                "--lot-max-sheets",
                "100",
                "--lot-max-age-secs",
                "1",
            ])
            .env("FSED_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cards = Kill(
        Command::new(bin("fse-sim"))
            .args([
                "cards",
                "--control",
                dir.join("control.sock").to_str().unwrap(),
                "--latency-ms",
                "0",
                "--signature-latency-ms",
                "0",
                "--cps-port",
                &port.to_string(),
                "--vitale-port",
                &(port + 1).to_string(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3)); // cards read, insurer bound
    (vec![cards, fsed, insurer], socket)
}

/// Runs `fse-sim practice` and returns its JSON summary.
fn practice(socket: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin("fse-sim"))
        .arg("practice")
        .args([
            "--socket",
            socket.to_str().unwrap(),
            "--pin",
            "1234",
            "--quiet",
        ])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!(
        "{}",
        stdout
            .lines()
            .filter(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn delete_queue(name: &str) {
    let _ = Command::new("rabbitmqctl")
        .args(["delete_queue", name])
        .output();
}

fn main() {
    // Every sheet goes to the organism of the default Vitale card: bind that one.
    let organism = "017510001";

    println!("== 64 clients, create → broker-confirmed (the insurer's consumer idles)");
    let dir = tempfile::tempdir().unwrap();
    let (procs, socket) = start(
        dir.path(),
        46963,
        organism,
        &["--slow-consumer-ms", "3600000"],
    );
    let s = practice(
        &socket,
        &[
            "--practices",
            "64",
            "--sheets",
            "30000",
            "--wait",
            "sent",
            "--degraded-percent",
            "0",
        ],
    );
    drop(procs);
    assert_eq!(s["created"], 30000, "{s}");
    delete_queue(&format!("insurer.amo.{organism}"));
    delete_queue(&format!("fsed.returns.bench.{organism}"));
    delete_queue(&format!("fsed.returns.bench.{organism}.dead"));

    println!("\n== create → ARL at a moderate load: 16 practices, 500 sheets/s");
    let dir = tempfile::tempdir().unwrap();
    let (procs, socket) = start(dir.path(), 46973, organism, &[]);
    let s = practice(
        &socket,
        &[
            "--practices",
            "16",
            "--sheets",
            "10000",
            "--rate",
            "500",
            "--wait",
            "acknowledged",
        ],
    );
    drop(procs);
    assert_eq!(s["acknowledged"], 10000, "{s}");
    delete_queue(&format!("insurer.amo.{organism}"));
    delete_queue(&format!("fsed.returns.bench.{organism}"));
    delete_queue(&format!("fsed.returns.bench.{organism}.dead"));
}
