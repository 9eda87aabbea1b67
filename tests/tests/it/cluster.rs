//! The insurer side on a three-node RabbitMQ cluster (`tests/cluster`, beside the machine's
//! default node): fsed given the three addresses, three competing insurer instances on
//! partition queues (consistent hash on the lot id, single active consumer), payments on.
//! In the middle of a run of 2,000 sheets in lots of 20 one insurer instance is killed
//! (`kill -9`) and the node fsed uses is stopped; in the end every lot is acknowledged once,
//! every sheet paid once, each surviving instance judged each lot at most once, the queues
//! fsed declares are quorum queues on the three nodes, and the node is back in its cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_for, Proc, Rpc};
use serde_json::{json, Value};

/// Sheets in the run.
const SHEETS: u64 = 2_000;
/// Sheets a lot holds at most: 2,000 / 20 = 100 lots at least (more when a lot closes by age).
const LOT_SHEETS: u64 = 20;
/// Partition queues shared by the three insurer instances (two each).
const PARTITIONS: u32 = 6;

/// The cluster of `tests/cluster` in a directory; stopped on drop, even after a failure.
pub struct Cluster {
    dir: PathBuf,
    /// The AMQP URLs of nodes 1, 2, 3.
    pub urls: Vec<String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster")
}

impl Cluster {
    /// Starts the three nodes (`tests/cluster start DIR`) and reads their ports.
    pub fn start(dir: &Path) -> Cluster {
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            urls: Vec::new(),
        };
        cluster.run(&["start"]);
        let ports = std::fs::read_to_string(dir.join("ports")).unwrap();
        cluster.urls = ports
            .lines()
            .map(|l| {
                let port = l.split_whitespace().nth(1).unwrap();
                format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
            })
            .collect();
        assert_eq!(cluster.urls.len(), 3, "{ports}");
        cluster
    }

    /// Runs `tests/cluster ARGS[0] DIR ARGS[1..]`; its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new(script())
            .arg(args[0])
            .arg(&self.dir)
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tests/cluster {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `rabbitmqctl list_queues name type members` on node `n`, as JSON.
    fn queues(&self, n: &str) -> Vec<Value> {
        let text = self.run(&[
            "ctl",
            n,
            "list_queues",
            "name",
            "type",
            "members",
            "--formatter",
            "json",
        ]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}

/// Starts insurer instance `k` of 3 on the cluster, its brokers tried from node k+1 on (so
/// the three are spread over the nodes), its report written to `dir/insurer<k>` on stop.
fn start_instance(dir: &Path, urls: &[String], k: usize) -> Proc {
    let order: Vec<&str> = (0..3).map(|i| urls[(k + i) % 3].as_str()).collect();
    let (brokers, report) = (order.join(","), dir.join(format!("insurer{k}")));
    let (partitions, instance) = (PARTITIONS.to_string(), format!("{k}/3"));
    Proc::start(
        "fse-sim",
        &[
            "insurer",
            "--amqp",
            &brokers,
            "--binding",
            "#",
            "--payments",
            "--partitions",
            &partitions,
            "--instance",
            &instance,
            "--report",
            report.to_str().unwrap(),
        ],
    )
}

/// Sheets made through fsed's socket by two clients, counted in `made`.
fn make_sheets(socket: &Path, made: &Arc<AtomicU64>) -> Vec<std::thread::JoinHandle<()>> {
    (0..2)
        .map(|c| {
            let (socket, made) = (socket.to_path_buf(), Arc::clone(made));
            std::thread::spawn(move || {
                let mut rpc = Rpc::connect(&socket, Duration::from_secs(5));
                for i in 0..SHEETS / 2 {
                    rpc.ok(
                        "fse.create",
                        json!({"act": {"code": "G"}, "tiers_payant": {"amo": true},
                               "idempotency_key": format!("cluster-{c}-{i}")}),
                    );
                    made.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

#[test]
fn a_node_and_an_insurer_lost_mid_run_lose_nothing_and_apply_once() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("cluster"));
    let urls = cluster.urls.clone();
    let config = format!(
        "[transport]\nkind = \"amqp\"\namqp_urls = {urls:?}\nreturn_queue = \"fsed.returns.cluster\"\npublish_timeout_secs = 5\n"
    );
    let (lot_sheets, age) = (LOT_SHEETS.to_string(), "1".to_string());
    let (mut fsed, mut rpc) = common::start_fsed_virtual(
        dir.path(),
        2,
        &config,
        &["--lot-max-sheets", &lot_sheets, "--lot-max-age-secs", &age],
    );
    let (_cards, _control) = common::start_fast_cards_on(dir.path(), &[]);
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let mut insurers: Vec<Proc> = (1..=3)
        .map(|k| start_instance(dir.path(), &urls, k))
        .collect();
    for i in &mut insurers {
        i.wait_line("insurer ready", Duration::from_secs(60));
    }

    let made = Arc::new(AtomicU64::new(0));
    let makers = make_sheets(&dir.path().join("fsed.sock"), &made);
    let at = |n: u64, what: &str| {
        wait_for(what, Duration::from_secs(120), || {
            (made.load(Ordering::Relaxed) >= n).then_some(())
        })
    };
    at(SHEETS / 3, "a third of the sheets");
    // Instance 1 dies without a goodbye: its unacknowledged lots go to the next instance.
    insurers[0].child.kill().unwrap();
    insurers[0].child.wait().unwrap();
    at(SHEETS / 2, "half of the sheets");
    // Node 1, fsed's first address, used by fsed while it answers.
    cluster.run(&["stop-node", "1"]);
    for m in makers {
        m.join().unwrap();
    }
    let stats: Value = wait_for("every sheet paid", Duration::from_secs(120), || {
        let s = rpc.ok("queue.stats", json!({}));
        (s["sheets"]["paid"] == SHEETS).then_some(s)
    });
    cluster.run(&["start-node", "1"]);
    assert_eq!(stats["sheets"]["rejected"], 0, "{stats}");
    assert_eq!(stats["sheets"]["refused"], 0, "{stats}");

    let lots = every_lot_acknowledged_once(&mut rpc, dir.path());
    quorum_queues_on_three_nodes(&cluster);
    assert!(fsed.terminate().success());
    surviving_instances_judged_each_lot_once(&mut insurers[1..], dir.path(), &lots);
    // Node 1 is back: node 2 sees the three nodes running.
    let status: Value =
        serde_json::from_str(&cluster.run(&["ctl", "2", "cluster_status", "--formatter", "json"]))
            .unwrap();
    assert_eq!(
        status["running_nodes"].as_array().unwrap().len(),
        3,
        "{status}"
    );
    eprintln!(
        "cluster test: {SHEETS} sheets in {} lots, {:.0} s",
        lots.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Every lot of `lots.list` acknowledged; fsed's events hold one positive ARL per lot and one
/// `sheet.paid` per sheet (repeats ignored). Returns the lot ids.
fn every_lot_acknowledged_once(rpc: &mut Rpc, dir: &Path) -> BTreeSet<String> {
    let list = rpc.ok("lots.list", json!({}));
    let list = list.as_array().unwrap();
    assert!(
        list.iter().all(|l| l["state"] == "acknowledged"),
        "{list:?}"
    );
    let lots: BTreeSet<String> = list
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lots.len(), list.len(), "lot ids unique");
    // 2,000 sheets in lots of at most 20: at least 2,000 / 20 = 100 lots.
    assert!(lots.len() as u64 >= SHEETS / LOT_SHEETS, "{}", lots.len());
    let q = fse_queue::Queue::open(&dir.join("fsed.db")).unwrap();
    let events = q.events_since(0, 1_000_000).unwrap();
    let mut per: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for e in &events {
        if [
            "arl.positive",
            "arl.negative",
            "sheet.paid",
            "sheet.refused",
        ]
        .contains(&e.kind.as_str())
        {
            *per.entry((e.kind.as_str(), e.subject.as_str()))
                .or_default() += 1;
        }
    }
    let twice: Vec<_> = per.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "applied twice: {twice:?}");
    let count = |kind: &str| per.keys().filter(|(k, _)| *k == kind).count() as u64;
    assert_eq!(count("arl.positive"), lots.len() as u64, "one ARL per lot");
    assert_eq!(count("arl.negative"), 0);
    assert_eq!(count("sheet.paid"), SHEETS, "one payment per sheet");
    lots
}

/// fsed's return queue and its dead-letter queue are quorum queues with three members.
fn quorum_queues_on_three_nodes(cluster: &Cluster) {
    let queues = cluster.queues("2");
    for name in ["fsed.returns.cluster", "fsed.returns.cluster.dead"] {
        let q = queues
            .iter()
            .find(|q| q["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {queues:?}"));
        assert_eq!(q["type"], "quorum", "{q}");
        assert_eq!(q["members"].as_array().unwrap().len(), 3, "{q}");
    }
    let partitions = queues
        .iter()
        .filter(|q| q["name"].as_str().unwrap().contains(".p") && q["type"] == "quorum")
        .count();
    assert_eq!(partitions, PARTITIONS as usize, "{queues:?}");
}

/// Each surviving instance's report lists each lot at most once, all of them fsed's lots;
/// together with the killed one they judged every lot (the killed one's share is what the
/// survivors did not judge, which a report cannot show: it died without one).
fn surviving_instances_judged_each_lot_once(
    insurers: &mut [Proc],
    dir: &Path,
    lots: &BTreeSet<String>,
) {
    let mut judged = 0;
    for (i, insurer) in insurers.iter_mut().enumerate() {
        insurer.terminate();
        let k = i + 2;
        let report: Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("insurer{k}")).join("report.json")).unwrap(),
        )
        .unwrap();
        let seen: Vec<&str> = report["lots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["lot_id"].as_str().unwrap())
            .collect();
        let unique: BTreeSet<&str> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "instance {k} judged a lot twice");
        assert!(
            unique.iter().all(|l| lots.contains(*l)),
            "instance {k} judged a lot fsed does not know"
        );
        judged += unique.len();
    }
    assert!(judged > 0, "the survivors judged lots");
    assert!(judged <= 2 * lots.len());
}
