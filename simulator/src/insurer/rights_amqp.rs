//! The rights responder over AMQP: request/reply on [`wire::RIGHTS_QUEUE`].

use std::time::Duration;

use fse_formats::wire;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::sync::watch;

use super::amqp::redact;
use super::rights::{respond, RightsKnobs, HEADER_DEADLINE_MS};
use super::{stopped, InsurerError};

/// Requests taken at once at most.
const PREFETCH: u16 = 64;

fn err(what: &'static str) -> impl Fn(lapin::Error) -> InsurerError {
    move |e| InsurerError::Amqp(format!("rights {what}: {e}"))
}

/// Serves rights requests until `stop`, reconnecting (200 ms doubling to 5 s); `ready` once
/// the queue is declared and consumed.
pub async fn run_rights_amqp(
    url: String,
    knobs: RightsKnobs,
    mut stop: watch::Receiver<bool>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let mut ready = ready;
    let mut backoff = Duration::from_millis(200);
    loop {
        match session(&url, &knobs, &mut stop, &mut ready).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(broker = %redact(&url), error = %e, "rights responder lost the broker; reconnecting")
            }
        }
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The queue's declaration, shared with the asker: durable, classic (per-message expiration).
pub fn declare_options() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

async fn session(
    url: &str,
    knobs: &RightsKnobs,
    stop: &mut watch::Receiver<bool>,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), InsurerError> {
    let props = ConnectionProperties::default().with_connection_name("fse-sim rights".into());
    let conn = Connection::connect(url, props)
        .await
        .map_err(err("connect"))?;
    let channel = conn.create_channel().await.map_err(err("channel"))?;
    channel
        .queue_declare(
            wire::RIGHTS_QUEUE.into(),
            declare_options(),
            FieldTable::default(),
        )
        .await
        .map_err(err("queue_declare"))?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .map_err(err("basic_qos"))?;
    let mut consumer = channel
        .basic_consume(
            wire::RIGHTS_QUEUE.into(),
            "fse-sim-rights".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err("basic_consume"))?;
    tracing::info!(queue = wire::RIGHTS_QUEUE, "rights responder consuming");
    if let Some(tx) = ready.take() {
        let _ = tx.send(());
    }
    loop {
        let delivery = tokio::select! {
            _ = stopped(stop) => {
                let _ = conn.close(200, "rights responder stopping".into()).await;
                return Ok(());
            }
            d = consumer.next() => d,
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(err("consume")(e)),
            None => return Err(InsurerError::Amqp("rights consumer closed".into())),
        };
        // A request is answered at most once; a lost one times out at the asker.
        delivery
            .ack(BasicAckOptions::default())
            .await
            .map_err(err("ack"))?;
        let (channel, knobs) = (channel.clone(), knobs.clone());
        tokio::spawn(async move {
            if !knobs.latency.is_zero() {
                tokio::time::sleep(knobs.latency).await;
            }
            answer(&channel, &delivery, &knobs).await;
        });
    }
}

/// The request's deadline (Unix milliseconds), when it carries one.
fn deadline_ms(props: &BasicProperties) -> Option<i64> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(HEADER_DEADLINE_MS)? {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        _ => None,
    }
}

async fn answer(
    channel: &lapin::Channel,
    delivery: &lapin::message::Delivery,
    knobs: &RightsKnobs,
) {
    let props = &delivery.properties;
    if deadline_ms(props).is_some_and(|d| chrono::Utc::now().timestamp_millis() > d) {
        tracing::info!("rights request past its deadline: dropped");
        return;
    }
    let (Some(reply_to), Some(correlation)) = (props.reply_to(), props.correlation_id()) else {
        tracing::warn!("rights request without reply_to or correlation_id: not answered");
        return;
    };
    let Some((_, der)) = respond(&delivery.data, knobs) else {
        return;
    };
    let reply = BasicProperties::default()
        .with_correlation_id(correlation.clone())
        .with_type(wire::TYPE_RIGHTS_ANSWER.into())
        .with_content_type(wire::CONTENT_TYPE_DER.into());
    let sent = channel
        .basic_publish(
            "".into(),
            reply_to.as_str().into(),
            BasicPublishOptions::default(),
            &der,
            reply,
        )
        .await;
    if let Err(e) = sent {
        tracing::warn!(error = %e, "rights answer not sent");
    }
}
