//! The AMQP transport against the real RabbitMQ broker (started by
//! `tests/run`) and the insurer simulator: a lot goes out with a confirm and
//! its ARL comes back on the return queue; a lot for a destination without a
//! bound queue is refused as unroutable instead of being lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fse_formats::ack::{Arl, ArlStatus};
use fse_simulator::insurer::{self, AmqpInsurerConfig, Insurer};
use fsed::transport::amqp::{AmqpConfig, AmqpTransport, TransportError};

const URL: &str = "amqp://127.0.0.1:5672/%2f";

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}{}", std::process::id(), nanos % 1_000_000_000)
}

#[tokio::test]
async fn a_lot_is_confirmed_answered_and_its_arl_comes_back() {
    let binding = format!("t{}", unique());
    let ins = Arc::new(Mutex::new(Insurer::new("test-insurer")));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let cfg = AmqpInsurerConfig {
        url: URL.into(),
        binding: binding.clone(),
        insurer: "test-insurer".into(),
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

    let transport = AmqpTransport::connect(&AmqpConfig {
        url: URL.into(),
        return_queue: format!("fsed.returns.test.{}", unique()),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut returns = transport.returns().await.unwrap();
    let lot = insurer::sample_lot(&format!("LOT-{binding}"), 3);
    transport
        .publish_lot(&lot.header.lot_id, &binding, &lot.to_der().unwrap())
        .await
        .unwrap();

    let msg = tokio::time::timeout(Duration::from_secs(20), returns.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let arl = Arl::from_der(&msg.body).unwrap();
    assert_eq!(arl.lot_id, lot.header.lot_id);
    assert_eq!(arl.status, ArlStatus::Positive, "{arl:?}");
    msg.ack().await.unwrap();
    assert_eq!(ins.lock().unwrap().report().received, 1);

    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_lot_for_an_unbound_destination_is_not_taken_as_sent() {
    let transport = AmqpTransport::connect(&AmqpConfig {
        url: URL.into(),
        return_queue: format!("fsed.returns.test.{}", unique()),
        ..Default::default()
    })
    .await
    .unwrap();
    let lot = insurer::sample_lot("LOT-unbound", 1);
    let err = transport
        .publish_lot(
            "LOT-unbound",
            &format!("nobody{}", unique()),
            &lot.to_der().unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Unroutable { .. }), "{err}");
    // The link still works afterwards.
    let err = transport
        .publish_lot("LOT-unbound", "nobody-else", &lot.to_der().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Unroutable { .. }), "{err}");
}
