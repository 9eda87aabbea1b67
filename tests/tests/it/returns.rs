//! Returns over the real RabbitMQ broker, driven by the load generator: the
//! insurer simulator answers every lot late, twice, sometimes after a
//! malformed reply, and sends a payment return per lot (some sheets refused);
//! fsed applies each return once — every sheet ends paid or refused, with
//! one event each, the refusals with their reason — and shows them through
//! `returns.list`; the malformed replies wait in its dead-letter queue. The
//! insurer's report (JSON and HTML) counts what it got. A payment return
//! that comes ahead of its lot's ARL is held, and applied once the ARL
//! behind it is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::{bin, wait_for};
use serde_json::{json, Value};

const SHEETS: u64 = 60;

/// Publishes a payment return into fsed's return queue, as an insurer would.
fn publish_return(queue: &str, lot_id: &str, der: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = lapin::Connection::connect(common::AMQP, lapin::ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .unwrap();
        ch.basic_publish(
            "".into(),
            queue.into(),
            lapin::options::BasicPublishOptions::default(),
            der,
            lapin::BasicProperties::default()
                .with_type(fse_formats::wire::TYPE_PAYMENT.into())
                .with_message_id(lot_id.into())
                .with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        let _ = conn.close(200, "done".into()).await;
    });
}

#[test]
fn payment_returns_are_applied_once_and_listed_whatever_the_insurer_does() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let (profile, destination) = common::vitale_of_new_centre(dir.path());
    let (_sim, _control) =
        common::start_fast_cards(dir.path(), &["--vitale-profile", profile.to_str().unwrap()]);
    let report = dir.path().join("report");
    let insurer = common::start_insurer(&[
        "--binding",
        &destination,
        "--payments",
        "--refuse-payments-percent",
        "30",
        "--duplicate-replies",
        "--malformed-percent",
        "50",
        "--reply-delay-ms",
        "300",
        "--report",
        report.to_str().unwrap(),
    ]);
    let return_queue = format!("fsed.returns.payments.{}", common::unique());
    let (mut fsed, mut rpc) = common::start_fsed_amqp(dir.path(), &return_queue, 10, 1);
    common::wait_cards(&mut rpc, 2);

    run_practices(dir.path());
    every_sheet_paid_or_refused_once(&mut rpc);
    let _answering = early_payment_is_held(&mut rpc, insurer, &return_queue, &destination);
    assert!(fsed.terminate().success());

    check_events_and_report(dir.path(), &report, &return_queue);
    common::delete_queues(&[&format!("insurer.amo.{destination}"), &return_queue]);
}

/// Four practices through the socket (the load generator), until every sheet's lot has its
/// ARL; its summary counts every sheet and shows the insurer's reply delay.
fn run_practices(dir: &std::path::Path) {
    // Four practices through the socket, until every sheet's lot has its ARL.
    let out = Command::new(bin("fse-sim"))
        .args([
            "practice",
            "--socket",
            dir.join("fsed.sock").to_str().unwrap(),
            "--practices",
            "4",
            "--sheets",
            &SHEETS.to_string(),
            "--pin",
            "1234",
            "--wait",
            "acknowledged",
            "--timeout-secs",
            "120",
            "--quiet",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fse-sim practice: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["created"], SHEETS, "{summary}");
    assert_eq!(summary["errors"], json!({}), "{summary}");
    assert_eq!(summary["acknowledged"], SHEETS, "{summary}");
    let arl_p50 = summary["arl_latency_ms"]["p50"].as_f64().unwrap();
    assert!(
        arl_p50 >= 300.0,
        "the insurer's reply delay shows: {summary}"
    );
    assert!(stdout.contains("create → ARL latency"), "{stdout}");
}

/// Every sheet paid or refused, once (the copies change nothing), and listed by `returns.list`.
fn every_sheet_paid_or_refused_once(rpc: &mut common::Rpc) {
    // Every sheet paid or refused, once.
    let stats: Value = wait_for("every payment return", Duration::from_secs(60), || {
        let s = rpc.ok("queue.stats", json!({}));
        let done = s["sheets"]["paid"].as_u64().unwrap() + s["sheets"]["refused"].as_u64().unwrap();
        (done == SHEETS).then_some(s)
    });
    let refused = stats["sheets"]["refused"].as_u64().unwrap();
    assert!(refused > 0 && refused < SHEETS, "{stats}");
    std::thread::sleep(Duration::from_secs(2)); // the copies arrive, and change nothing
    assert_eq!(rpc.ok("queue.stats", json!({})), stats);

    let returns = rpc.ok("returns.list", json!({"limit": 1000}));
    let payments = returns["payments"].as_array().unwrap();
    assert_eq!(payments.len() as u64, SHEETS, "{returns}");
    for p in payments {
        match p["outcome"].as_str().unwrap() {
            "paid" => assert!(p["amount_cents"].as_u64().unwrap() > 0, "{p}"),
            "refused" => {
                assert_eq!(p["code"], "TEST_REFUSED", "{p}");
                let sheet = rpc.ok("fse.get", json!({"id": p["sheet_id"]}));
                assert_eq!(sheet["state"], "refused", "{sheet}");
                assert!(
                    sheet["reason"]
                        .as_str()
                        .unwrap()
                        .starts_with("TEST_REFUSED"),
                    "{sheet}"
                );
            }
            other => panic!("outcome {other}"),
        }
    }
    let lots = rpc.ok("lots.list", json!({}));
    let arls = returns["arls"].as_array().unwrap();
    assert_eq!(arls.len(), lots.as_array().unwrap().len(), "{returns}");
    let bad = rpc.call("returns.list", json!({"limit": 0}));
    assert_eq!(bad["error"]["data"]["field"], "limit", "{bad}");
}

/// A payment return ahead of its lot's ARL is held, then applied. Takes the running insurer
/// (stopped here); returns the insurer that answers, to keep until the test ends.
fn early_payment_is_held(
    rpc: &mut common::Rpc,
    mut insurer: common::Proc,
    return_queue: &str,
    destination: &str,
) -> common::Proc {
    // A payment return ahead of its lot's ARL in the return queue is held while the returns
    // behind it go on (that very ARL), then applied. The insurer stops; a new lot waits in
    // its queue; its payment return is published first, then an insurer answers the lot.
    insurer.terminate();
    let made = [rpc.ok("fse.create", json!({"act": {"code": "G"}}))];
    rpc.ok("lots.close", json!({}));
    let lot_id = wait_for("the new lot sent", Duration::from_secs(30), || {
        let lots = rpc.ok("lots.list", json!({}));
        lots.as_array()
            .unwrap()
            .iter()
            .find(|l| l["state"] == "sent")
            .map(|l| l["id"].as_str().unwrap().to_string())
    });
    let early = fse_formats::ack::PaymentReturn {
        lot_id: lot_id.clone(),
        insurer: destination.to_string(),
        issued_at: chrono::Utc::now().format("%Y%m%d%H%M%SZ").to_string(),
        payments: made
            .iter()
            .map(|m| fse_formats::ack::Payment {
                sheet_number: m["number"].as_u64().unwrap(),
                outcome: fse_formats::ack::PaymentOutcome::Paid {
                    amount_cents: m["sheet"]["amounts"]["amo_cents"].as_u64().unwrap(),
                },
            })
            .collect(),
    };
    // Signed by the lot's insurer, as every return must be.
    let early =
        fse_simulator::insurer::sign_return(fse_formats::ack::ReturnContent::Payment(early))
            .unwrap();
    publish_return(return_queue, &lot_id, &early);
    let answering = common::start_insurer(&["--binding", destination]);
    for m in &made {
        wait_for("the early payment applied", Duration::from_secs(30), || {
            let sheet = rpc.ok("fse.get", json!({"id": m["id"]}));
            (sheet["state"] == "paid").then_some(())
        });
    }
    answering
}

/// fsed's events (one per sheet, copies ignored), the insurer's report, and the malformed
/// replies in the dead-letter queue.
fn check_events_and_report(dir: &std::path::Path, report: &std::path::Path, return_queue: &str) {
    let q = fse_queue::Queue::open(&dir.join("fsed.db")).unwrap();
    let events = q.events_since(0, 100_000).unwrap();
    let paid_events = events
        .iter()
        .filter(|e| e.kind == "sheet.paid" || e.kind == "sheet.refused")
        .count() as u64;
    assert_eq!(
        paid_events,
        SHEETS + 1,
        "one event per sheet, copies ignored"
    );

    let summary: Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    assert_eq!(summary["summary"]["sheets"], SHEETS, "{summary}");
    assert_eq!(
        summary["summary"]["paid"].as_u64().unwrap()
            + summary["summary"]["refused"].as_u64().unwrap(),
        SHEETS
    );
    assert!(
        summary["summary"]["malformed"].as_u64().unwrap() > 0,
        "{summary}"
    );
    // Each malformed reply (sent twice, as every reply) was dead-lettered, not lost.
    let malformed = summary["summary"]["malformed"].as_u64().unwrap();
    let dead = fse_formats::wire::dead_letter_queue(return_queue);
    // (The broker's queue counts lag by a few seconds.)
    wait_for("the dead letters counted", Duration::from_secs(30), || {
        (common::queue_messages(&dead) == Some(2 * malformed)).then_some(())
    });
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("polyline"), "{html}");
}
