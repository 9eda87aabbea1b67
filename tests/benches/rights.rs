//! `fse.create` latency with an online rights lookup against without, in the same run: two
//! fseds on their embedded virtual readers and the real broker, each with a Vitale card whose
//! rights opened more than 90 days ago (vitale-adulte), one with `[rights] enabled` and one
//! without, asked in alternating rounds; the insurer simulator answers rights requests at once
//! (AMQP request/reply on `fsed.rights`). In the online rounds the rights cache is emptied
//! before each sheet (outside the timed part), so every sheet makes the round trip; a third
//! series shows the sheets that reuse a cached answer. The simulated cards answer at once.
//! `cargo build --release --workspace --bins && cargo bench -p fsed_tests --bench rights`
//! (needs RabbitMQ at `amqp://127.0.0.1:5672/%2f`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Proc, Rpc};
use serde_json::json;

/// Sheets per round, and rounds of each.
const PER_ROUND: usize = 50;
const ROUNDS: usize = 4;

/// fsed on the virtual reader and the broker, `rights` its `[rights]` section, with fast cards.
fn fsed(dir: &Path, rights: &str, queue: &str) -> (Proc, Rpc, Proc) {
    let config = format!(
        "[transport]\nkind = \"amqp\"\nreturn_queue = \"{queue}\"\n\n[lots]\nmax_sheets = 1000\nmax_age_secs = 3600\n\n{rights}"
    );
    let (proc_, mut rpc) = common::start_fsed_virtual(dir, 2, &config, &[]);
    let (cards, _) = common::start_fast_cards_on(dir, &["--vitale-profile", "vitale-adulte"]);
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    (proc_, rpc, cards)
}

/// One sheet's latency; with `db`, the rights cache is emptied first (untimed).
fn sheet(rpc: &mut Rpc, db: Option<&rusqlite::Connection>, tag: &str) -> Duration {
    if let Some(db) = db {
        db.execute("DELETE FROM rights_cache", []).unwrap();
    }
    let t = Instant::now();
    let r = rpc.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "idempotency_key": tag}),
    );
    let took = t.elapsed();
    assert!(r["sheet"]["amounts"]["amo_cents"].is_u64(), "{r}");
    took
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let binding = format!("benchrights{}", common::unique());
    let _insurer = common::start_insurer(&["--binding", &binding]);
    let (off_dir, on_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let queues = [
        format!("fsed.returns.bench-rights.{}", common::unique()),
        format!("fsed.returns.bench-rights.{}", common::unique()),
    ];
    let (_off, mut off, _off_cards) =
        fsed(off_dir.path(), "[rights]\nenabled = false\n", &queues[0]);
    let (_on, mut on, _on_cards) = fsed(
        on_dir.path(),
        "[rights]\nenabled = true\noffline = \"refuse\"\n",
        &queues[1],
    );
    let db = rusqlite::Connection::open(on_dir.path().join("fsed.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    // Warm-up: the history, the broker connections.
    for k in 0..10 {
        sheet(&mut off, None, &format!("warm-off-{k}"));
        sheet(&mut on, Some(&db), &format!("warm-on-{k}"));
    }
    let (mut without, mut online, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for k in 0..PER_ROUND {
            without.push(sheet(&mut off, None, &format!("off-{round}-{k}")));
        }
        for k in 0..PER_ROUND {
            online.push(sheet(&mut on, Some(&db), &format!("on-{round}-{k}")));
        }
        for k in 0..PER_ROUND {
            cached.push(sheet(&mut on, None, &format!("cached-{round}-{k}")));
        }
    }
    for v in [&mut without, &mut online, &mut cached] {
        v.sort();
    }
    println!(
        "fse.create, {} secured sheets each, alternating rounds of {PER_ROUND}:",
        without.len()
    );
    for (name, v) in [
        ("card rights (no lookup)", &without),
        ("rights online (AMQP round trip)", &online),
        ("rights online (cached answer)", &cached),
    ] {
        println!(
            "  {name:34} p50 {:6.2} ms  p95 {:6.2} ms  p99 {:6.2} ms  max {:6.2} ms",
            percentile(v, 0.5),
            percentile(v, 0.95),
            percentile(v, 0.99),
            percentile(v, 1.0)
        );
    }
    println!(
        "  the lookup adds {:.2} ms at the median",
        percentile(&online, 0.5) - percentile(&without, 0.5)
    );
    common::delete_queues(&[
        &fse_formats::wire::insurer_queue("amo", &binding),
        fse_formats::wire::RIGHTS_QUEUE,
        &queues[0],
        &queues[1],
    ]);
}
