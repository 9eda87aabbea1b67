//! The AMQP transport: lots consumed from the insurer's own quorum queue, replies published
//! to each lot's `reply_to` and confirmed before the lot is acked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fse_formats::ack::ReturnContent;
use fse_formats::wire;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::watch;

use super::partitions::{Deliveries, Partitions};
use super::{sign_return, stopped, Insurer, InsurerError, UNKNOWN_LOT_ID};

/// Lots the AMQP consumer holds unacknowledged at most.
pub(super) const PREFETCH: u16 = 16;
/// Longest wait for the broker: connection and topology, or one ARL's confirm.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// `url` with its user information masked, for logs and errors.
pub(super) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// AMQP settings of the insurer.
#[derive(Clone)]
pub struct AmqpInsurerConfig {
    /// Broker URL (credentials allowed; never shown unmasked); several nodes of one cluster
    /// comma-separated, tried in turn (the one that answered last first).
    pub url: String,
    /// Routing key pattern of the lots it takes (`#`: every destination).
    pub binding: String,
    /// Its name in the ARLs.
    pub insurer: String,
    /// Sends every ARL this many times (1; more to test a sender's idempotence).
    pub copies: u32,
    /// Takes FSE lots (AMO) or DRE lots (AMC).
    pub kind: InsurerKind,
}

/// Which lots an insurer takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum InsurerKind {
    /// The mandatory insurer: FSE lots from [`wire::EXCHANGE_AMO`], answered with ARLs.
    #[default]
    Amo,
    /// A supplementary insurer paid directly: DRE lots from [`wire::EXCHANGE_AMC`], verified
    /// and counted (no reply).
    Amc,
}

impl InsurerKind {
    /// `amo` or `amc`.
    pub fn as_str(self) -> &'static str {
        match self {
            InsurerKind::Amo => "amo",
            InsurerKind::Amc => "amc",
        }
    }

    /// Its exchange.
    pub fn exchange(self) -> &'static str {
        match self {
            InsurerKind::Amo => wire::EXCHANGE_AMO,
            InsurerKind::Amc => wire::EXCHANGE_AMC,
        }
    }
}

impl std::fmt::Debug for AmqpInsurerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpInsurerConfig")
            .field("url", &redact(&self.url))
            .field("binding", &self.binding)
            .field("insurer", &self.insurer)
            .finish()
    }
}

pub(super) fn amqp_err(what: &str) -> impl Fn(lapin::Error) -> InsurerError + '_ {
    move |e| InsurerError::Amqp(format!("{what}: {e}"))
}

/// The broker URLs of `url` (comma-separated), each parsed: a bad one fails at once, named
/// by its masked form (the parser's own message quotes the whole URL, password included).
pub(super) fn parse_urls(url: &str) -> Result<Vec<(String, AMQPUri)>, InsurerError> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<AMQPUri>()
                .map(|uri| (u.to_string(), uri))
                .map_err(|_| InsurerError::Usage(format!("invalid broker URL {}", redact(u))))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| {
            if v.is_empty() {
                Err(InsurerError::Usage("no broker URL".into()))
            } else {
                Ok(v)
            }
        })
}

/// Consumes lots until `stop` turns true, reconnecting with backoff (200 ms
/// doubling to 5 s), to the next broker of `cfg.url` after a failure; `ready` is sent once
/// its queue is declared, bound and consumed. Fails only on a URL that does not parse.
pub async fn run_amqp(
    cfg: AmqpInsurerConfig,
    insurer: Arc<Mutex<Insurer>>,
    stop: watch::Receiver<bool>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), InsurerError> {
    run_amqp_with(cfg, None, insurer, stop, ready).await
}

/// [`run_amqp`], its lots taken from `partitions` when given.
pub(super) async fn run_amqp_with(
    cfg: AmqpInsurerConfig,
    partitions: Option<Partitions>,
    insurer: Arc<Mutex<Insurer>>,
    mut stop: watch::Receiver<bool>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), InsurerError> {
    let urls = parse_urls(&cfg.url)?;
    let mut ready = ready;
    let mut backoff = Duration::from_millis(200);
    let mut at = 0;
    loop {
        let (url, uri) = &urls[at % urls.len()];
        let session = amqp_session(
            &cfg,
            (url, uri.clone()),
            partitions.as_ref(),
            &insurer,
            &mut stop,
            &mut ready,
        );
        match session.await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(broker = %redact(url), error = %e, "insurer lost the broker; reconnecting");
                at += 1;
            }
        }
        // A full round of the brokers failed: wait before the next.
        if at % urls.len() == 0 {
            tokio::select! {
                _ = stopped(&mut stop) => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// One connection's worth of consuming; `Ok` when stopped.
async fn amqp_session(
    cfg: &AmqpInsurerConfig,
    (url, uri): (&str, AMQPUri),
    partitions: Option<&Partitions>,
    insurer: &Arc<Mutex<Insurer>>,
    stop: &mut watch::Receiver<bool>,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), InsurerError> {
    let queue = wire::insurer_queue(cfg.kind.as_str(), &cfg.binding);
    let stop_setup = stop.clone();
    let setup = async {
        match partitions {
            None => consume(cfg, uri, &queue, insurer)
                .await
                .map(|(c, ch, consumer)| (c, ch, Box::pin(consumer) as Deliveries)),
            Some(p) => p.consume(cfg, uri, &queue, stop_setup).await,
        }
    };
    let (conn, channel, mut consumer) = tokio::select! {
        _ = stopped(stop) => return Ok(()),
        s = tokio::time::timeout(BROKER_TIMEOUT + partitions.map_or(Duration::ZERO, Partitions::standby_wait), setup) => s
            .map_err(|_| InsurerError::Amqp("no answer from the broker in time".into()))??,
    };
    tracing::info!(broker = %redact(url), %queue, binding = %cfg.binding, partitions = partitions.map_or(0, |p| p.count), "insurer consuming");
    if let Some(tx) = ready.take() {
        let _ = tx.send(());
    }
    loop {
        let delivery = tokio::select! {
            _ = stopped(stop) => {
                let _ = conn.close(200, "insurer stopping".into()).await;
                return Ok(());
            }
            d = consumer.next() => d,
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(amqp_err("consume")(e)),
            None => return Err(InsurerError::Amqp("consumer closed".into())),
        };
        if cfg.kind == InsurerKind::Amc {
            take_dre_lot(insurer, &delivery.data);
            delivery
                .ack(BasicAckOptions::default())
                .await
                .map_err(amqp_err("ack"))?;
            continue;
        }
        let (slow, delay) = {
            let g = insurer.lock().unwrap_or_else(|p| p.into_inner());
            (g.knobs().slow_consumer, g.knobs().reply_delay)
        };
        if !slow.is_zero() {
            tokio::select! {
                _ = stopped(stop) => {
                    let _ = conn.close(200, "insurer stopping".into()).await;
                    return Ok(());
                }
                _ = tokio::time::sleep(slow) => {}
            }
        }
        answer_delivery(cfg, insurer, &channel, &delivery, delay).await?;
        delivery
            .ack(BasicAckOptions::default())
            .await
            .map_err(amqp_err("ack"))?;
    }
}

/// Connects with confirms on and declares the insurer's exchange.
pub(super) async fn connect(
    cfg: &AmqpInsurerConfig,
    uri: AMQPUri,
    queue: &str,
) -> Result<(Connection, lapin::Channel), InsurerError> {
    let props =
        ConnectionProperties::default().with_connection_name(format!("fse-sim {queue}").into());
    let conn = Connection::connect_uri(uri, props)
        .await
        .map_err(amqp_err("connect"))?;
    let channel = conn.create_channel().await.map_err(amqp_err("channel"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(amqp_err("confirm_select"))?;
    channel
        .exchange_declare(
            cfg.kind.exchange().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(amqp_err("exchange_declare"))?;
    Ok((conn, channel))
}

/// Declares `queue` a durable quorum queue (with `args` besides its type) and binds it to
/// `exchange` with `routing_key`: the insurer's own queue, or one of its partitions.
pub(super) async fn declare_bound_quorum(
    channel: &lapin::Channel,
    queue: &str,
    mut args: FieldTable,
    exchange: &str,
    routing_key: &str,
) -> Result<(), InsurerError> {
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .map_err(amqp_err("queue_declare"))?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(amqp_err("queue_bind"))?;
    Ok(())
}

/// Connects and declares the insurer's topology: confirms on, its exchange, its quorum
/// `queue` bound to it, the prefetch (one lot at a time for a slow consumer), the consumer.
async fn consume(
    cfg: &AmqpInsurerConfig,
    uri: AMQPUri,
    queue: &str,
    insurer: &Arc<Mutex<Insurer>>,
) -> Result<(Connection, lapin::Channel, lapin::Consumer), InsurerError> {
    let (conn, channel) = connect(cfg, uri, queue).await?;
    declare_bound_quorum(
        &channel,
        queue,
        FieldTable::default(),
        cfg.kind.exchange(),
        &cfg.binding,
    )
    .await?;
    let prefetch = if insurer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .knobs()
        .slow_consumer
        .is_zero()
    {
        PREFETCH
    } else {
        1
    };
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(amqp_err("basic_qos"))?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            "fse-sim-insurer".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(amqp_err("basic_consume"))?;
    Ok((conn, channel, consumer))
}

/// Takes one DRE lot as an AMC: verified and counted, logged (no reply).
fn take_dre_lot(insurer: &Arc<Mutex<Insurer>>, data: &[u8]) {
    let judged = insurer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .receive_dre(data);
    match judged {
        Ok(n) => tracing::info!(dres = n, "DRE lot accepted"),
        Err((code, why)) => tracing::warn!(%code, reason = %why, "DRE lot refused"),
    }
}

/// Answers one FSE lot: judged, then its replies (a malformed copy first when the knob
/// draws one, the ARL, the payment return) sent to its `reply_to` now, or after `delay`
/// from a task of their own.
async fn answer_delivery(
    cfg: &AmqpInsurerConfig,
    insurer: &Arc<Mutex<Insurer>>,
    channel: &lapin::Channel,
    delivery: &lapin::message::Delivery,
    delay: Duration,
) -> Result<(), InsurerError> {
    let (arl, payment, malformed) = {
        let mut g = insurer.lock().unwrap_or_else(|p| p.into_inner());
        let attachments = delivery.properties.kind().as_ref().map(|k| k.as_str())
            == Some(wire::TYPE_ATTACHMENT_LOT);
        let mut arl = if attachments {
            g.receive_attachments(&delivery.data)
        } else {
            g.receive(&delivery.data)
        };
        if arl.lot_id == UNKNOWN_LOT_ID {
            if let Some(id) = delivery.properties.message_id() {
                arl.lot_id = id.to_string();
            }
        }
        let payment = g.payment_return(&arl.lot_id);
        (arl, payment, g.malformed_now())
    };
    tracing::info!(lot = %arl.lot_id, status = ?arl.status, redelivered = delivery.redelivered, "lot answered");
    match delivery.properties.reply_to().clone() {
        Some(reply_to) => {
            let mut replies = Vec::new();
            if malformed {
                // A reply the sender cannot read: it must refuse it and lose nothing.
                replies.push((wire::TYPE_ARL, vec![0x30, 0x03, 0x02, 0x01]));
            }
            replies.push((
                wire::TYPE_ARL,
                sign_return(ReturnContent::Arl(arl.clone())).map_err(InsurerError::Encode)?,
            ));
            if let Some(p) = payment {
                replies.push((
                    wire::TYPE_PAYMENT,
                    sign_return(ReturnContent::Payment(p)).map_err(InsurerError::Encode)?,
                ));
            }
            let reply = Reply {
                channel: channel.clone(),
                reply_to: reply_to.to_string(),
                lot_id: arl.lot_id.clone(),
                copies: cfg.copies.max(1),
            };
            if delay.is_zero() {
                reply.send(&replies).await?;
            } else {
                // The lot is taken now; its replies follow after the delay.
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Err(e) = reply.send(&replies).await {
                        tracing::warn!(lot = %reply.lot_id, error = %e, "delayed reply not sent");
                    }
                });
            }
        }
        None => tracing::warn!(lot = %arl.lot_id, "lot without reply_to: no ARL sent"),
    }
    Ok(())
}

/// Where and how the replies to one lot go.
struct Reply {
    channel: lapin::Channel,
    reply_to: String,
    lot_id: String,
    copies: u32,
}

impl Reply {
    /// Publishes each reply (`type`, body) `copies` times on the default exchange to the
    /// sender's return queue, persistent, `message_id` = lot id, and waits for each confirm.
    async fn send(&self, replies: &[(&str, Vec<u8>)]) -> Result<(), InsurerError> {
        for (kind, der) in replies {
            for copy in 0..self.copies {
                let props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(self.lot_id.as_str().into())
                    .with_type((*kind).into())
                    .with_content_type(wire::CONTENT_TYPE_DER.into());
                let publish = async {
                    self.channel
                        .basic_publish(
                            "".into(),
                            self.reply_to.as_str().into(),
                            BasicPublishOptions {
                                // The first copy only: the extra copies are as a careless
                                // insurer or a redelivery would send them.
                                mandatory: copy == 0,
                                ..Default::default()
                            },
                            der,
                            props,
                        )
                        .await
                        .map_err(amqp_err("reply publish"))?
                        .await
                        .map_err(amqp_err("reply confirm"))
                };
                let confirm = tokio::time::timeout(BROKER_TIMEOUT, publish)
                    .await
                    .map_err(|_| InsurerError::Amqp("no confirm of the reply in time".into()))??;
                match confirm {
                    Confirmation::Ack(None) => {}
                    // The sender's return queue does not exist: nobody to answer. The
                    // sender resends the lot later and gets this same reply then.
                    Confirmation::Ack(Some(_)) => tracing::warn!(
                        lot = %self.lot_id, reply_to = %self.reply_to,
                        "reply unroutable: the sender's return queue does not exist"
                    ),
                    Confirmation::Nack(_) | Confirmation::NotRequested => {
                        return Err(InsurerError::Amqp(
                            "reply not confirmed by the broker".into(),
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}
