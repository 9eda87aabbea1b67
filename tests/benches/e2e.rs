//! End to end, on the real parts: `fse-sim practice` drives fsed (embedded
//! virtual reader ⇄ `fse-sim cards` at full speed, SQLite, RabbitMQ) and
//! measures
//! 1. sheets per second from the first `fse.create` until the last sheet's
//!    lot is confirmed by the broker, with 64 clients (an insurer queue is
//!    bound but its consumer idles, so that answering lots takes no CPU from
//!    the run; the queue is deleted afterwards);
//! 2. the create → ARL latency at a moderate load (16 practices, 500
//!    sheets/s, the insurer simulator answering);
//!
//! and, in the same run, the physical limit of the first: every secured sheet
//! has the Vitale card sign its proof of presence, one sheet after the other
//! (one card): the simulated card's raw rate of INTERNAL AUTHENTICATE in
//! process (no link), beside raw ed25519-dalek signatures.
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

/// Signatures per second over about a second: the simulated Vitale card's (INTERNAL
/// AUTHENTICATE in process), then ed25519-dalek's alone.
fn raw_signature_rates() -> (f64, f64) {
    use ed25519_dalek::Signer;
    let mut card = fse_simulator::profiles::default_vitale();
    let mut ch = fse_simulator::card::InProcess(&mut card);
    let challenge = [7u8; 32];
    fse_formats::cards::vitale_authenticate(&mut ch, &challenge).unwrap();
    let rate = |f: &mut dyn FnMut()| {
        let (n, t) = (20_000, std::time::Instant::now());
        for _ in 0..n {
            f();
        }
        f64::from(n) / t.elapsed().as_secs_f64()
    };
    let card = rate(&mut || {
        std::hint::black_box(
            fse_formats::cards::vitale_authenticate_selected(&mut ch, &challenge).unwrap(),
        );
    });
    let key = fse_simulator::profiles::test_key("raw");
    let dalek = rate(&mut || {
        std::hint::black_box(key.sign(std::hint::black_box(&challenge)));
    });
    (card, dalek)
}

fn main() {
    // Every sheet goes to the organism of the default Vitale card: bind that one.
    let organism = "017510001";

    let (card, dalek) = raw_signature_rates();
    println!(
        "== physical limit: the simulated Vitale card signs {card:.0} proofs of presence/s in \
         process (one card, one after the other); raw ed25519-dalek: {dalek:.0} signatures/s"
    );

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
