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

/// The transport's own limit, in the same run: `n` bare request/reply round trips over the
/// broker (lapin, confirms on, a 32-byte request to a queue whose consumer answers at once to
/// the direct reply-to), none of fsed's work around it.
fn raw_round_trips(n: usize) -> Vec<Duration> {
    use futures_lite::StreamExt;
    use lapin::options::{
        BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let queue = format!("bench.rpc.{}", common::unique());
        let conn = Connection::connect(common::AMQP, ConnectionProperties::default())
            .await
            .unwrap();
        // The answering side: a channel of its own, answering each request to its reply_to.
        let server = conn.create_channel().await.unwrap();
        let declare = QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        };
        server
            .queue_declare(queue.as_str().into(), declare, FieldTable::default())
            .await
            .unwrap();
        let mut requests = server
            .basic_consume(
                queue.as_str().into(),
                "bench-server".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        tokio::spawn(async move {
            while let Some(Ok(d)) = requests.next().await {
                let to = d.properties.reply_to().clone().unwrap();
                let id = d.properties.correlation_id().clone().unwrap();
                server
                    .basic_publish(
                        "".into(),
                        to.as_str().into(),
                        BasicPublishOptions::default(),
                        &d.data,
                        BasicProperties::default().with_correlation_id(id),
                    )
                    .await
                    .unwrap();
            }
        });
        let client = conn.create_channel().await.unwrap();
        client
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut replies = client
            .basic_consume(
                "amq.rabbitmq.reply-to".into(),
                "bench-client".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut took = Vec::with_capacity(n);
        for i in 0..n + 10 {
            let t = Instant::now();
            client
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &[7u8; 32],
                    BasicProperties::default()
                        .with_correlation_id(i.to_string().into())
                        .with_reply_to("amq.rabbitmq.reply-to".into()),
                )
                .await
                .unwrap()
                .await
                .unwrap();
            let reply = replies.next().await.unwrap().unwrap();
            assert_eq!(reply.data, [7u8; 32]);
            // The first ten warm the connection up.
            if i >= 10 {
                took.push(t.elapsed());
            }
        }
        took
    })
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
    let mut raw = raw_round_trips(without.len());
    for v in [&mut without, &mut online, &mut cached, &mut raw] {
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
        ("limit: bare AMQP request/reply", &raw),
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
