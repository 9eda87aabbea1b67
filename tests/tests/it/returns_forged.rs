//! Returns fsed must refuse, over the real RabbitMQ broker and then the spool: an ARL signed
//! with another key than its certificate's, one with a self-signed certificate, one signed by
//! another insurer than the lot's destination, a bare (unsigned) ARL, a payment of
//! 100,000,000,000 € and a payment return from an insurer fsed never sent the lot to. None
//! changes the lot or its sheet; each is dead-lettered with its reason (AMQP header
//! `x-fsed-reason`; spool: moved to `inbox/refused/` beside a `.reason` file), counted per
//! reason in `queue.stats` across a restart, announced as `return.dead_lettered` and reported
//! by `fsectl doctor`. The genuine returns of the lot's insurer are applied after them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{bin, wait_for};
use fse_formats::ack::{
    Arl, ArlStatus, Payment, PaymentOutcome, PaymentReturn, ReturnContent, SignedReturn,
};
use fse_formats::lot::SignedLot;
use fse_formats::wire;
use fse_simulator::insurer::sign_return;
use fse_simulator::pki::{insurer_key, self_signed_insurer_certificate, TestPki};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{json, Value};

/// Another organism, certified by the insurer CA but never a destination of this test's lots.
const OTHER_INSURER: &str = "017510001";
/// An insurer code fsed never sent anything to.
const UNKNOWN_INSURER: &str = "099999999";
/// 100,000,000,000 € in cents: 100,000,000,000 × 100.
const HUNDRED_BILLION_EUROS_CENTS: u64 = 10_000_000_000_000;

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn channel() -> (lapin::Connection, lapin::Channel) {
    let conn = lapin::Connection::connect(common::AMQP, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

/// Declares the AMO insurer queue of `destination` and binds it, with no consumer: fsed's lots
/// are routed there and wait, unanswered, for the test to read them.
fn bind_insurer_queue(destination: &str) -> String {
    let queue = wire::insurer_queue("amo", destination);
    block_on(async {
        let (conn, ch) = channel().await;
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
        ch.queue_bind(
            queue.as_str().into(),
            wire::EXCHANGE_AMO.into(),
            destination.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let _ = conn.close(200, "done".into()).await;
    });
    queue
}

/// Takes the messages of `queue` (acknowledged at once): each one's body and `x-fsed-reason`.
fn take_all(queue: &str) -> Vec<(Vec<u8>, Option<String>)> {
    block_on(async {
        let (conn, ch) = channel().await;
        let mut out = Vec::new();
        while let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let reason = m
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(wire::HEADER_DEAD_REASON).cloned())
                .and_then(|v| match v {
                    AMQPValue::LongString(s) => Some(s.to_string()),
                    _ => None,
                });
            out.push((m.delivery.data, reason));
        }
        let _ = conn.close(200, "done".into()).await;
        out
    })
}

/// Publishes `der` into fsed's return queue as an insurer would, with the AMQP `type` `kind`.
fn publish(queue: &str, kind: &str, lot_id: &str, der: &[u8]) {
    block_on(async {
        let (conn, ch) = channel().await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            der,
            lapin::BasicProperties::default()
                .with_type(kind.into())
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

fn now() -> String {
    chrono::Utc::now().format("%Y%m%d%H%M%SZ").to_string()
}

/// A positive ARL of `lot`, as `insurer` would answer it.
fn arl(lot: &SignedLot, insurer: &str) -> ReturnContent {
    ReturnContent::Arl(Arl {
        lot_id: lot.header.lot_id.clone(),
        merkle_root: hex::encode(lot.header.merkle_root),
        status: ArlStatus::Positive,
        insurer: insurer.into(),
        received_at: now(),
        rejections: vec![],
    })
}

/// A payment return of `lot`, `insurer` paying sheet `number` `amount_cents`.
fn payment(lot: &SignedLot, insurer: &str, number: u64, amount_cents: u64) -> ReturnContent {
    ReturnContent::Payment(PaymentReturn {
        lot_id: lot.header.lot_id.clone(),
        insurer: insurer.into(),
        issued_at: now(),
        payments: vec![Payment {
            sheet_number: number,
            outcome: PaymentOutcome::Paid { amount_cents },
        }],
    })
}

/// `content` signed by a key that is not its certificate's (the genuine certificate of `code`).
fn signed_with_another_key(content: ReturnContent, code: &str) -> Vec<u8> {
    let cert = TestPki::shared()
        .unwrap()
        .insurer_certificate(code)
        .unwrap();
    SignedReturn::sign(content, &insurer_key("a forger"), cert)
        .unwrap()
        .to_der()
        .unwrap()
}

/// `content` signed with a self-signed certificate naming `code`.
fn signed_self_certified(content: ReturnContent, code: &str) -> Vec<u8> {
    let key = insurer_key("a forger");
    let cert = self_signed_insurer_certificate(code, key.clone()).unwrap();
    SignedReturn::sign(content, &key, cert)
        .unwrap()
        .to_der()
        .unwrap()
}

fn fsectl_doctor(socket: &Path) -> (i32, Value) {
    let out = Command::new(bin("fsectl"))
        .arg("--socket")
        .arg(socket)
        .args(["--json", "doctor"])
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fsectl doctor: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report)
}

fn returns_check(report: &Value) -> Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "returns")
        .cloned()
        .unwrap_or_else(|| panic!("no returns check: {report}"))
}

/// Writes `bytes` into the spool inbox as `name`, whole (a hidden name, then renamed).
fn drop_in(inbox: &Path, name: &str, bytes: &[u8]) {
    let tmp = inbox.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, inbox.join(name)).unwrap();
}

#[test]
fn forged_and_misdirected_returns_are_dead_lettered_with_their_reason() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let (profile, destination) = common::vitale_of_new_centre(dir.path());
    assert_ne!(destination, OTHER_INSURER);
    let (_sim, _control) =
        common::start_fast_cards(dir.path(), &["--vitale-profile", profile.to_str().unwrap()]);
    let insurer_queue = bind_insurer_queue(&destination);
    let return_queue = format!("fsed.returns.forged.{}", common::unique());
    let dead_queue = wire::dead_letter_queue(&return_queue);
    let (mut fsed, mut rpc) = common::start_fsed_amqp(dir.path(), &return_queue, 1, 3600);
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));

    // One sheet, one lot, sent to the destination's queue, where the test reads it.
    let made = rpc.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}}),
    );
    let (sheet_id, number) = (made["id"].clone(), made["number"].as_u64().unwrap());
    let claim = made["sheet"]["amounts"]["amo_cents"].as_u64().unwrap();
    let lot = wait_for(
        "the lot in the insurer's queue",
        Duration::from_secs(30),
        || {
            take_all(&insurer_queue)
                .pop()
                .map(|(der, _)| SignedLot::from_der(&der).unwrap())
        },
    );
    let lot_id = lot.header.lot_id.clone();
    assert_eq!(lot.header.destination, destination);

    // Six returns that must not be believed, in this order.
    let forged = forged_returns(&lot, &destination, number, claim);
    for (kind, der, _) in &forged {
        publish(&return_queue, kind, &lot_id, der);
    }
    let dead = wait_for("six dead letters", Duration::from_secs(30), || {
        let s = rpc.ok("queue.stats", json!({}));
        let n: u64 = s["dead_letters"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        (n == 6).then_some(s)
    });
    // 1 bad signature, 1 untrusted certificate, 2 wrong insurers (an ARL, a payment), 1
    // unsigned, 1 amount above the claim.
    assert_eq!(
        dead["dead_letters"],
        json!({"amount_above_claim": 1, "bad_signature": 1, "untrusted_certificate": 1, "unsigned": 1, "wrong_insurer": 2}),
        "{dead}"
    );
    // Nothing changed: the lot is still sent, its sheet not acknowledged, let alone paid.
    assert_eq!(dead["lots"]["sent"], 1, "{dead}");
    assert_eq!(dead["sheets"]["sent"], 1, "{dead}");
    assert_eq!(dead["sheets"]["paid"], 0, "{dead}");
    // Each is in the dead-letter queue, whole, with its reason, in the order it came.
    // (The broker's queue counts lag by a few seconds.)
    wait_for("the dead letters queued", Duration::from_secs(30), || {
        (common::queue_messages(&dead_queue) == Some(6)).then_some(())
    });
    let got = take_all(&dead_queue);
    assert_eq!(got.len(), 6);
    for ((_, der, reason), (body, header)) in forged.iter().zip(&got) {
        assert_eq!(body, der);
        assert_eq!(header.as_deref(), Some(*reason));
    }
    // The doctor warns (exit 4) and says how many, of which kind.
    let (code, report) = fsectl_doctor(&dir.path().join("fsed.sock"));
    assert_eq!(code, 4, "{report}");
    let check = returns_check(&report);
    assert_eq!(check["status"], "warning", "{check}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains("6 return(s)") && detail.contains("wrong_insurer 2"),
        "{check}"
    );

    // The lot's own insurer, genuinely: the ARL, then the payment of the sheet's AMO share.
    publish(
        &return_queue,
        wire::TYPE_ARL,
        &lot_id,
        &sign_return(arl(&lot, &destination)).unwrap(),
    );
    publish(
        &return_queue,
        wire::TYPE_PAYMENT,
        &lot_id,
        &sign_return(payment(&lot, &destination, number, claim)).unwrap(),
    );
    wait_for(
        "the genuine payment applied",
        Duration::from_secs(30),
        || {
            let sheet = rpc.ok("fse.get", json!({"id": sheet_id}));
            (sheet["state"] == "paid").then_some(())
        },
    );
    let paid = rpc.ok("returns.list", json!({}));
    assert_eq!(paid["payments"][0]["amount_cents"], claim, "{paid}");
    assert!(fsed.terminate().success());

    spool_refusals(dir.path(), &destination, &dead);

    one_event_per_refusal(dir.path());
    common::delete_queues(&[&insurer_queue, &return_queue, &dead_queue]);
}

/// Six returns that must not be believed, in this order, each with the dead-letter reason
/// fsed must give it: (message type, bytes, reason).
fn forged_returns(
    lot: &SignedLot,
    destination: &str,
    number: u64,
    claim: u64,
) -> [(&'static str, Vec<u8>, &'static str); 6] {
    [
        (
            wire::TYPE_ARL,
            signed_with_another_key(arl(lot, destination), destination),
            "bad_signature",
        ),
        (
            wire::TYPE_ARL,
            signed_self_certified(arl(lot, destination), destination),
            "untrusted_certificate",
        ),
        (
            wire::TYPE_ARL,
            sign_return(arl(lot, OTHER_INSURER)).unwrap(),
            "wrong_insurer",
        ),
        (
            wire::TYPE_ARL,
            match arl(lot, destination) {
                ReturnContent::Arl(a) => a.to_der().unwrap(),
                _ => unreachable!(),
            },
            "unsigned",
        ),
        (
            wire::TYPE_PAYMENT,
            sign_return(payment(
                lot,
                destination,
                number,
                HUNDRED_BILLION_EUROS_CENTS,
            ))
            .unwrap(),
            "amount_above_claim",
        ),
        (
            wire::TYPE_PAYMENT,
            sign_return(payment(lot, UNKNOWN_INSURER, number, claim)).unwrap(),
            "wrong_insurer",
        ),
    ]
}

/// The counts survive a restart, now on the spool transport; two returns refused from the
/// spool are moved aside with their reason, and the genuine ARL is applied.
fn spool_refusals(dir: &Path, destination: &str, dead: &Value) {
    let (mut fsed, mut rpc) = common::start_fsed(dir, &["--transport", "spool"]);
    assert_eq!(
        rpc.ok("queue.stats", json!({}))["dead_letters"],
        dead["dead_letters"]
    );
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let made = rpc.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}}),
    );
    let number = made["number"].as_u64().unwrap();
    rpc.ok("lots.close", json!({}));
    let (outbox, inbox) = (dir.join("spool/outbox"), dir.join("spool/inbox"));
    let lot = wait_for("the lot in the outbox", Duration::from_secs(30), || {
        let file = std::fs::read_dir(&outbox)
            .ok()?
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "lot"))?;
        SignedLot::from_der(&std::fs::read(file.path()).ok()?).ok()
    });
    let lot_id = lot.header.lot_id.clone();
    let refused = inbox.join(wire::SPOOL_REFUSED_DIR);
    for (name, der, reason) in [
        (
            format!("{lot_id}.arl"),
            sign_return(arl(&lot, OTHER_INSURER)).unwrap(),
            "wrong_insurer",
        ),
        (
            format!("{lot_id}.pay"),
            sign_return(payment(
                &lot,
                destination,
                number,
                HUNDRED_BILLION_EUROS_CENTS,
            ))
            .unwrap(),
            "amount_above_claim",
        ),
    ] {
        drop_in(&inbox, &name, &der);
        let why = wait_for("the file moved aside", Duration::from_secs(30), || {
            std::fs::read_to_string(refused.join(format!("{name}.reason"))).ok()
        });
        assert!(why.starts_with(&format!("{reason}: ")), "{why}");
        assert_eq!(std::fs::read(refused.join(&name)).unwrap(), der);
        assert!(!inbox.join(&name).exists());
    }
    // Two more: 3 wrong insurers, 2 amounts above the claim.
    let stats = rpc.ok("queue.stats", json!({}));
    assert_eq!(
        stats["dead_letters"],
        json!({"amount_above_claim": 2, "bad_signature": 1, "untrusted_certificate": 1, "unsigned": 1, "wrong_insurer": 3}),
        "{stats}"
    );
    assert_eq!(stats["lots"]["sent"], 1, "{stats}");
    // The genuine ARL from the spool is applied.
    drop_in(
        &inbox,
        &format!("{lot_id}.arl"),
        &sign_return(arl(&lot, destination)).unwrap(),
    );
    wait_for("the spool ARL applied", Duration::from_secs(30), || {
        let s = rpc.ok("queue.stats", json!({}));
        (s["lots"]["acknowledged"] == 2).then_some(())
    });
    assert!(fsed.terminate().success());
}

/// One event per refusal: 6 over AMQP, 2 from the spool.
fn one_event_per_refusal(dir: &Path) {
    let q = fse_queue::Queue::open(&dir.join("fsed.db")).unwrap();
    let events = q.events_since(0, 100_000).unwrap();
    let dead_events: Vec<Value> = events
        .iter()
        .filter(|e| e.kind == "return.dead_lettered")
        .map(|e| e.detail.clone())
        .collect();
    assert_eq!(dead_events.len(), 8, "{dead_events:?}");
    assert_eq!(dead_events[0]["reason"], "bad_signature");
    assert_eq!(dead_events[7]["reason"], "amount_above_claim");
}
