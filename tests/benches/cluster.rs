//! The insurer side on a three-node RabbitMQ cluster (`tests/cluster`) beside the machine's
//! single default node, measured in the same run:
//! 1. the raw broker publish-confirm rate: 2 KiB persistent messages, 32 in flight (fsed's
//!    default window), into a quorum queue: one member on the single node, three on the
//!    cluster;
//! 2. end to end: `fse-sim practice` (16 practices) drives fsed (virtual reader, cards at full
//!    speed) until every sheet's ARL is in; sheets/s from the first create to the last ARL,
//!    then to the last payment applied. Single node: one insurer on its own queue (the
//!    default node has no consistent-hash plugin, and is not touched); cluster: fsed given
//!    the three addresses, three competing insurer instances on 6 partition queues.
//!
//! Needs the release binaries (`cargo build --release -p fsed -p fse_simulator --bins`),
//! RabbitMQ on 127.0.0.1:5672 and `rabbitmq-server` for the cluster. Run:
//! `cargo bench -p fsed_tests --bench cluster` (`FSED_BENCH_SHEETS` sheets, default 20,000).
//! The driver does little work itself: built in debug (`cargo test -p fsed_tests --bench
//! cluster`) with `FSED_BENCH_BIN_DIR=target/release` it runs the release fsed and fse-sim.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, Kill};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};

const SINGLE: &str = "amqp://127.0.0.1:5672/%2f";
/// Messages of the raw publish-confirm measure.
const MESSAGES: usize = 5_000;
/// In flight at once: fsed's default window.
const WINDOW: usize = 32;

/// The cluster of `tests/cluster`, stopped on drop.
struct Cluster(PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.0).status();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster")
}

/// Starts the cluster in `dir`; its three URLs.
fn start_cluster(dir: &Path) -> (Cluster, Vec<String>) {
    let cluster = Cluster(dir.to_path_buf());
    let out = Command::new(script())
        .arg("start")
        .arg(dir)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "tests/cluster start");
    let ports = std::fs::read_to_string(dir.join("ports")).unwrap();
    let urls = ports
        .lines()
        .map(|l| {
            let port = l.split_whitespace().nth(1).unwrap();
            format!("amqp://127.0.0.1:{port}/%2f")
        })
        .collect();
    (cluster, urls)
}

/// Messages per second, published with confirms, `WINDOW` in flight, into a fresh quorum queue
/// on `url` (deleted afterwards); also the queue's member count (`cluster`: the cluster's
/// directory, else the default node).
async fn publish_confirm_rate(url: &str, cluster: Option<&Path>) -> (f64, usize) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let queue = format!("fsed.bench.confirm.{}", std::process::id());
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.as_str().into(), durable, args)
        .await
        .unwrap();
    let body = vec![0x5a_u8; 2048];
    let start = Instant::now();
    for _ in 0..MESSAGES / WINDOW {
        let mut pending = Vec::with_capacity(WINDOW);
        for _ in 0..WINDOW {
            pending.push(
                ch.basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .unwrap(),
            );
        }
        for p in pending {
            assert!(p.await.unwrap().is_ack());
        }
    }
    let rate = (MESSAGES / WINDOW * WINDOW) as f64 / start.elapsed().as_secs_f64();
    let members = members(cluster, &queue);
    ch.queue_delete(queue.as_str().into(), Default::default())
        .await
        .unwrap();
    let _ = conn.close(200, "done".into()).await;
    (rate, members)
}

/// The members of quorum queue `queue` as `rabbitmqctl` sees them (the default node, or node
/// 1 of the cluster in `cluster`).
fn members(cluster: Option<&Path>, queue: &str) -> usize {
    let out = match cluster {
        None => Command::new("rabbitmqctl")
            .args(["list_queues", "name", "members", "--formatter", "json"])
            .output(),
        Some(dir) => Command::new(script())
            .arg("ctl")
            .arg(dir)
            .args(["1", "list_queues", "name", "members", "--formatter", "json"])
            .output(),
    }
    .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(json!([]));
    list.as_array()
        .into_iter()
        .flatten()
        .find(|q| q["name"] == queue)
        .and_then(|q| q["members"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// fsed over AMQP on `urls` (env `FSED_TRANSPORT_AMQP_URLS`), virtual reader and cards, in
/// `dir`; returns them and its socket.
fn start_fsed(dir: &Path, urls: &str, queue: &str) -> (Kill, Kill, PathBuf) {
    common::start_virtual_env(
        dir,
        &["--transport", "amqp", "--return-queue", queue],
        &[("FSED_TRANSPORT_AMQP_URLS", urls)],
    )
}

/// Insurer instances: one on its own queue for `binding` (`partitions` 0), or three on
/// partition queues.
fn start_insurers(urls: &[String], binding: &str, partitions: u32) -> Vec<Kill> {
    let n = if partitions == 0 { 1 } else { 3 };
    (1..=n)
        .map(|k| {
            let order: Vec<&str> = (0..urls.len())
                .map(|i| urls[(k + i) % urls.len()].as_str())
                .collect();
            let brokers = order.join(",");
            let mut args = vec![
                "insurer",
                "--amqp",
                &brokers,
                "--binding",
                binding,
                "--payments",
            ];
            let (parts, instance) = (partitions.to_string(), format!("{k}/{n}"));
            if partitions > 0 {
                args.extend_from_slice(&["--partitions", &parts, "--instance", &instance]);
            }
            Kill(
                Command::new(bin("fse-sim"))
                    .args(&args)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect()
}

/// One end-to-end run: (sheets/s from the first create to the last ARL, to the last payment
/// applied). The insurers
/// are bound to `binding`; fsed's return queue is `queue`.
fn end_to_end(urls: &[String], binding: &str, partitions: u32, sheets: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let queue = format!("fsed.returns.bench.cluster.{}", std::process::id());
    let insurers = start_insurers(urls, binding, partitions);
    let (fsed, cards, socket) = start_fsed(dir.path(), &urls.join(","), &queue);
    let start = Instant::now();
    let s = common::practice(
        &socket,
        &[
            "--practices",
            "16",
            "--sheets",
            &sheets.to_string(),
            "--wait",
            "acknowledged",
            "--degraded-percent",
            "0",
        ],
    );
    assert_eq!(s["acknowledged"], sheets, "{s}");
    // The practices return once every sheet's lot has its ARL.
    let to_arl = sheets as f64 / start.elapsed().as_secs_f64();
    let mut client = fsed_client::Client::connect(&socket).unwrap();
    let end = Instant::now() + Duration::from_secs(300);
    loop {
        let stats = client.call("queue.stats", json!({})).unwrap();
        if stats["sheets"]["paid"] == sheets {
            break;
        }
        assert!(Instant::now() < end, "payments: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let paid = sheets as f64 / start.elapsed().as_secs_f64();
    drop((cards, fsed, insurers));
    if partitions == 0 {
        // The default node is shared: its queues of this run go.
        for q in [
            format!("insurer.amo.{binding}"),
            queue.clone(),
            format!("{queue}.dead"),
        ] {
            let _ = Command::new("rabbitmqctl")
                .args(["delete_queue", &q])
                .output();
        }
    }
    (to_arl, paid)
}

fn main() {
    let sheets: u64 = std::env::var("FSED_BENCH_SHEETS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let cluster_dir = tempfile::tempdir().unwrap();
    let (_cluster, urls) = start_cluster(cluster_dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (single_rate, single_members) = rt.block_on(publish_confirm_rate(SINGLE, None));
    let (cluster_rate, cluster_members) =
        rt.block_on(publish_confirm_rate(&urls[0], Some(cluster_dir.path())));
    println!(
        "== raw publish-confirm, 2 KiB persistent, {WINDOW} in flight, quorum queue: single node \
         {single_rate:.0} msg/s ({single_members} member); cluster {cluster_rate:.0} msg/s \
         ({cluster_members} members)"
    );
    // The single node is shared: its insurer takes only the default Vitale card's organism.
    let (single_arl, single_paid) = end_to_end(&[SINGLE.to_string()], "017510001", 0, sheets);
    let (cluster_arl, cluster_paid) = end_to_end(&urls, "#", 6, sheets);
    println!(
        "== end to end, {sheets} sheets, 16 practices: single node (1 insurer) {single_arl:.0} \
         sheets/s to the last ARL, {single_paid:.0} to the last payment; cluster (3 nodes, 3 \
         insurer instances on 6 partitions) {cluster_arl:.0} sheets/s to the last ARL, \
         {cluster_paid:.0} to the last payment"
    );
}
