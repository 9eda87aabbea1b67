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

use common::{bin, Kill};

const AMQP: &str = "amqp://127.0.0.1:5672/%2f";

/// Starts an insurer (with `insurer_args`), then fsed with its virtual reader over AMQP, and
/// the cards, in `dir`; returns them and fsed's socket.
fn start(
    dir: &std::path::Path,
    binding: &str,
    insurer_args: &[&str],
) -> (Vec<Kill>, std::path::PathBuf) {
    let mut insurer = vec!["insurer", "--amqp", AMQP, "--binding", binding];
    insurer.extend_from_slice(insurer_args);
    let insurer = Kill(
        Command::new(bin("fse-sim"))
            .args(&insurer)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (fsed, cards, socket) = common::start_virtual(
        dir,
        &[
            "--transport",
            "amqp",
            "--return-queue",
            &format!("fsed.returns.bench.{binding}"),
        ],
    );
    (vec![cards, fsed, insurer], socket)
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
    let (procs, socket) = start(dir.path(), organism, &["--slow-consumer-ms", "3600000"]);
    let s = common::practice(
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
    let (procs, socket) = start(dir.path(), organism, &[]);
    let s = common::practice(
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
