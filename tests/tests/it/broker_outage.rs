//! The broker stopped for 30 s in the middle of a 5,000-sheet run, then
//! started again (`rabbitmqctl stop_app` / `start_app`): fsed keeps
//! accepting sheets, its lots wait signed, its own reconnect loop finds the
//! broker again, and in the end every sheet is acknowledged, every lot was
//! answered once by the insurer (a lot resent after an unknown outcome is
//! recognised by its id), and nothing was lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_for, Rpc};
use serde_json::{json, Value};

const SHEETS: u64 = 5_000;

fn rabbitmqctl(what: &str) {
    let out = Command::new("rabbitmqctl").arg(what).output().unwrap();
    assert!(
        out.status.success(),
        "rabbitmqctl {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_30_s_broker_outage_mid_run_loses_nothing_and_delivers_once() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let (profile, destination) = common::vitale_of_new_centre(dir.path());
    let (_sim, _control) =
        common::start_fast_cards(dir.path(), &["--vitale-profile", profile.to_str().unwrap()]);
    let mut insurer = common::start_insurer(&["--binding", &destination]);
    let return_queue = format!("fsed.returns.outage.{}", common::unique());
    let (mut fsed, mut rpc) = common::start_fsed_amqp(dir.path(), &return_queue, 100, 2);
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));

    let made = Arc::new(AtomicU64::new(0));
    let maker = {
        let (socket, made) = (dir.path().join("fsed.sock"), Arc::clone(&made));
        std::thread::spawn(move || {
            let mut rpc = Rpc::connect(&socket, Duration::from_secs(5));
            for i in 0..SHEETS {
                rpc.ok(
                    "fse.create",
                    json!({"act": {"code": "G"}, "tiers_payant": {"amo": true},
                           "idempotency_key": format!("outage-{i}")}),
                );
                made.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    wait_for("a third of the sheets", Duration::from_secs(120), || {
        (made.load(Ordering::Relaxed) >= SHEETS / 3).then_some(())
    });
    rabbitmqctl("stop_app");
    let stopped = Instant::now();
    let during = made.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(30));
    let after = made.load(Ordering::Relaxed);
    rabbitmqctl("start_app");
    assert!(
        after > during,
        "fsed kept accepting sheets while the broker was down ({during} → {after})"
    );
    eprintln!("broker down {:.0} s", stopped.elapsed().as_secs_f64());
    maker.join().unwrap();

    let stats: Value = wait_for("every sheet acknowledged", Duration::from_secs(240), || {
        let s = rpc.ok("queue.stats", json!({}));
        (s["sheets"]["acknowledged"] == SHEETS).then_some(s)
    });
    assert_eq!(stats["sheets"]["rejected"], 0, "{stats}");
    let lots = rpc.ok("lots.list", json!({}));
    let lots = lots.as_array().unwrap();
    assert!(lots.iter().all(|l| l["state"] == "acknowledged"));
    assert!(fsed.terminate().success());

    // The insurer answered each lot once; any second delivery was a recognised duplicate.
    insurer.terminate();
    let report: Value = loop {
        let line = insurer
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the insurer's report");
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if v.get("positive").is_some() {
                break v;
            }
        }
    };
    assert_eq!(report["positive"], json!(lots.len()), "{report}");
    assert_eq!(report["negative"], 0, "{report}");
    assert_eq!(
        report["received"].as_u64().unwrap(),
        lots.len() as u64 + report["duplicates"].as_u64().unwrap(),
        "{report}"
    );
    let q = fse_queue::Queue::open(&dir.path().join("fsed.db")).unwrap();
    let sheets = q.list_sheets(None, 10_000, fse_queue::SheetId(0)).unwrap();
    assert_eq!(sheets.len() as u64, SHEETS);
    eprintln!(
        "outage test: {SHEETS} sheets, {} lots, insurer {report}",
        lots.len()
    );
    common::delete_queues(&[&format!("insurer.amo.{destination}"), &return_queue]);
}
