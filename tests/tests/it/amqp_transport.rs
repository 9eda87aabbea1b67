//! The AMQP transport against the real RabbitMQ broker (started by
//! `tests/run`) and the insurer simulator: a lot goes out with a confirm and
//! its ARL comes back on the return queue (again, if not acked); a lot for a
//! destination without a bound queue is refused as unroutable instead of
//! being lost; a return fsed cannot apply goes to the dead-letter queue; a
//! refused login is a connect error that shows no password.
//! Each test uses queues of its own and deletes them at the end.

// Each test holds its turn on the broker (`common::shared_services`) for its whole length,
// across its awaits: the guard lives on the test's own thread, and nothing else in its runtime
// takes it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::await_holding_lock)]

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fse_formats::ack::{ArlStatus, ReturnContent, SignedReturn};
use fse_formats::wire;
use fse_simulator::insurer::{self, AmqpInsurerConfig, Insurer};
use fsed::transport::amqp::{AmqpConfig, AmqpTransport, TransportError};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Digits of their own for each call (process id and clock).
fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}{}", std::process::id(), nanos % 1_000_000_000)
}

/// Deletes the durable queues a test declared.
async fn delete_queues(names: &[String]) {
    let conn = lapin::Connection::connect(URL, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    for name in names {
        // A queue without dead letters has no `.dead` queue: a failed delete closes only
        // its own channel.
        for q in [name.clone(), wire::dead_letter_queue(name)] {
            let ch = conn.create_channel().await.unwrap();
            let _ = ch
                .queue_delete(
                    q.as_str().into(),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await;
        }
    }
    let _ = conn.close(200, "cleanup".into()).await;
}

#[tokio::test]
async fn a_return_fsed_cannot_apply_is_dead_lettered_not_lost() {
    let _turn = common::shared_services();
    let return_queue = format!("fsed.returns.test.{}", unique());
    let transport = AmqpTransport::connect(&AmqpConfig {
        url: URL.into(),
        return_queue: return_queue.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let conn = lapin::Connection::connect(URL, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_publish(
        "".into(),
        return_queue.as_str().into(),
        lapin::options::BasicPublishOptions::default(),
        b"not DER",
        lapin::BasicProperties::default().with_type(wire::TYPE_ARL.into()),
    )
    .await
    .unwrap();
    let mut returns = transport.returns().await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(10), returns.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(msg.body, b"not DER");
    msg.dead_letter().await.unwrap();
    let dead = wire::dead_letter_queue(&return_queue);
    let mut count = 0;
    for _ in 0..50 {
        count = ch
            .queue_declare(
                dead.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count();
        if count == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count, 1, "the rejected return waits in {dead}");
    drop(returns);
    let _ = conn.close(200, "done".into()).await;
    delete_queues(&[return_queue]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lot_is_confirmed_answered_and_its_arl_comes_back() {
    let _turn = common::shared_services();
    let binding = format!("9{}", &unique()[..8]);
    let ins = Arc::new(Mutex::new(Insurer::new(&binding)));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let cfg = AmqpInsurerConfig {
        url: URL.into(),
        binding: binding.clone(),
        insurer: binding.clone(),
        copies: 1,
        kind: insurer::InsurerKind::Amo,
    };
    let task = tokio::spawn(insurer::run_amqp(
        cfg,
        Arc::clone(&ins),
        stop,
        Some(ready_tx),
    ));
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .unwrap()
        .unwrap();

    let return_queue = format!("fsed.returns.test.{}", unique());
    let transport = AmqpTransport::connect(&AmqpConfig {
        url: URL.into(),
        return_queue: return_queue.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let lot = insurer::sample_lot(&format!("LOT-{binding}"), 3);
    transport
        .publish_lot(&lot.header.lot_id, &binding, &lot.to_der().unwrap())
        .await
        .unwrap();

    let next = async |stream: &mut fsed::transport::amqp::ReturnStream| {
        tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    // Taken but not acked (as if fsed stopped before its commit)...
    let mut returns = transport.returns().await.unwrap();
    let first = next(&mut returns).await;
    assert_eq!(
        first.message_id.as_deref(),
        Some(lot.header.lot_id.as_str())
    );
    assert_eq!(first.message_type.as_deref(), Some(wire::TYPE_ARL));
    // A message holds its channel (to dead-letter a copy with a reason): a stopped fsed drops
    // both, and only then is its connection gone.
    let first_body = first.body.clone();
    drop(first);
    drop(returns);
    // ...so it comes again.
    let mut returns = transport.returns().await.unwrap();
    let msg = next(&mut returns).await;
    assert_eq!(msg.body, first_body);
    // The insurer signs what it returns: an envelope holding the ARL.
    let ReturnContent::Arl(arl) = SignedReturn::from_der(&msg.body).unwrap().content else {
        panic!("an ARL was expected");
    };
    assert_eq!(arl.lot_id, lot.header.lot_id);
    assert_eq!(arl.status, ArlStatus::Positive, "{arl:?}");
    assert_eq!(arl.insurer, binding);
    assert_eq!(arl.merkle_root, hex::encode(lot.header.merkle_root));
    msg.ack().await.unwrap();
    assert_eq!(ins.lock().unwrap().report().received, 1);

    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    drop(returns);
    delete_queues(&[return_queue, wire::insurer_queue("amo", &binding)]).await;
}

#[tokio::test]
async fn a_lot_for_an_unbound_destination_is_not_taken_as_sent() {
    let _turn = common::shared_services();
    let return_queue = format!("fsed.returns.test.{}", unique());
    let transport = AmqpTransport::connect(&AmqpConfig {
        url: URL.into(),
        return_queue: return_queue.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let lot = insurer::sample_lot("LOT-unbound", 1);
    let destination = format!("nobody{}", unique());
    let err = transport
        .publish_lot("LOT-unbound", &destination, &lot.to_der().unwrap())
        .await
        .unwrap_err();
    match &err {
        TransportError::Unroutable { destination: d } => assert_eq!(d, &destination),
        other => panic!("expected Unroutable, got {other}"),
    }
    // The link still works afterwards.
    let err = transport
        .publish_lot("LOT-unbound", "nobody-else", &lot.to_der().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Unroutable { .. }), "{err}");
    delete_queues(&[return_queue]).await;
}

#[tokio::test]
async fn a_refused_login_is_a_connect_error_without_the_password() {
    let _turn = common::shared_services();
    let err = AmqpTransport::connect(&AmqpConfig {
        url: "amqp://guest:not-the-password@127.0.0.1:5672/%2f".into(),
        return_queue: format!("fsed.returns.test.{}", unique()),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, TransportError::Connect(_)), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");
}
