//! The AMQP transport (RabbitMQ, AMQP 0-9-1, lapin). At every connect it
//! declares its topology: topic exchanges for AMO and AMC lots (durable),
//! fsed's return queue (durable, quorum) and its dead-letter queue
//! (`<return queue>.dead`, behind the direct exchange `fsed.dead`), where a
//! return fsed cannot apply is rejected to, so that nothing is lost. A lot is published persistent,
//! `mandatory`, with `message_id` = lot id and `reply_to` = the return
//! queue; it counts as sent only on the broker's confirm — a nack, a timeout
//! or a returned (unroutable) message is a failure and the lot stays queued.
//! Returns (ARLs) are consumed on a connection of their own and acked by the
//! caller only once committed, so a crash before the commit makes the broker
//! deliver them again.
//!
//! The connection is fsed's own: on a failure it is dropped and made anew at
//! the next call (lapin's automatic recovery is not used). Several brokers of
//! one cluster may be given: a new connection tries them in turn, starting
//! with the last one that answered, so when a node goes fsed moves to another
//! (the lots not confirmed stay queued and are published again; the insurer
//! dedups by lot id). The URLs may carry credentials, so they are shown only
//! through [`redact`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fse_formats::wire;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind,
    ExchangeKind,
};
use tokio::sync::Mutex;

/// Returns the return consumer holds unacknowledged at most.
const RETURNS_PREFETCH: u16 = 32;

/// AMQP settings.
#[derive(Clone)]
pub struct AmqpConfig {
    /// Broker URL (`amqp://` or `amqps://`, credentials allowed).
    pub url: String,
    /// Other nodes of the same cluster, tried in turn after `url` when it does not answer.
    pub fallback_urls: Vec<String>,
    /// fsed's return queue (default [`wire::DEFAULT_RETURN_QUEUE`]).
    pub return_queue: String,
    /// Longest wait for a connection with its topology, and for a publish and its confirm (default 10 s).
    pub publish_timeout: Duration,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            url: "amqp://127.0.0.1:5672/%2f".into(),
            fallback_urls: Vec::new(),
            return_queue: wire::DEFAULT_RETURN_QUEUE.into(),
            publish_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &redact(&self.url))
            .field(
                "fallback_urls",
                &self
                    .fallback_urls
                    .iter()
                    .map(|u| redact(u))
                    .collect::<Vec<_>>(),
            )
            .field("return_queue", &self.return_queue)
            .field("publish_timeout", &self.publish_timeout)
            .finish()
    }
}

/// The URL without its user information, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Transport failures; none carries credentials.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No usable link to the broker: bad URL, unreachable, refused login, or
    /// the topology (exchanges, return queue, consumer) could not be declared.
    #[error("cannot use the broker: {0}")]
    Connect(String),
    /// The broker or the channel refused the publish itself.
    #[error("publish failed: {0}")]
    Publish(String),
    /// No confirm within the timeout: unknown outcome, the lot is resent later (the insurer dedups by lot id).
    #[error("no confirm from the broker in time")]
    Timeout,
    /// The broker returned the lot: no queue is bound for this destination.
    #[error("no queue is bound for destination {destination}: the lot stays queued")]
    Unroutable {
        /// Destination organism.
        destination: String,
    },
    /// The broker refused the lot (nack).
    #[error("the broker refused the lot (nack)")]
    Nack,
    /// The connection or channel is gone (a return not acked is delivered again).
    #[error("the connection to the broker was lost")]
    Closed,
}

/// Whether a lapin error means the connection or channel is gone.
fn is_lost(e: &lapin::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::IOError(_)
            | ErrorKind::InvalidChannelState(..)
            | ErrorKind::InvalidConnectionState(_)
            | ErrorKind::MissingHeartbeatError
            | ErrorKind::RuntimeShutdownError(_)
    )
}

/// A connection to the broker, made anew when lost.
pub struct AmqpTransport {
    cfg: AmqpConfig,
    /// The publishing link; `None` until the first use or after a failure.
    link: Mutex<Option<(Connection, Channel)>>,
    /// Index in [`AmqpConfig::urls`] of the broker that answered last: tried first.
    preferred: AtomicUsize,
}

impl std::fmt::Debug for AmqpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpTransport")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// One ARL (or other return) taken from the return queue.
pub struct ReturnMessage {
    /// Its body (DER).
    pub body: Vec<u8>,
    /// Its `message_id` (the lot id, for an ARL).
    pub message_id: Option<String>,
    /// Its AMQP `type` (e.g. [`wire::TYPE_ARL`]).
    pub message_type: Option<String>,
    acker: Acker,
    /// The consumer's channel (publisher confirms on), to dead-letter a copy with its reason.
    channel: Channel,
    /// Its properties as received, kept on the dead-lettered copy.
    properties: BasicProperties,
    /// The dead-letter queue (routing key on [`wire::EXCHANGE_DEAD`]).
    dead_queue: String,
}

impl std::fmt::Debug for ReturnMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReturnMessage")
            .field("len", &self.body.len())
            .field("message_id", &self.message_id)
            .field("message_type", &self.message_type)
            .finish_non_exhaustive()
    }
}

impl ReturnMessage {
    /// Acknowledges it to the broker: call only after the commit. An `Err`
    /// means the broker will deliver it again (to be recognised as a duplicate).
    pub async fn ack(self) -> Result<(), TransportError> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::warn!(error = %e, "ack of a return failed");
                TransportError::Closed
            })
    }

    /// Moves it to the dead-letter queue with the reason it was refused: a copy with the headers
    /// [`wire::HEADER_DEAD_REASON`] (a stable code) and [`wire::HEADER_DEAD_DETAIL`] (in words) is
    /// published to [`wire::EXCHANGE_DEAD`] and confirmed by the broker, then the original is
    /// acked. When the copy is not confirmed, the original is rejected instead (the broker
    /// dead-letters it, without the reason); an `Err` means it will come again.
    pub async fn dead_letter_because(
        self,
        reason: &str,
        detail: &str,
    ) -> Result<(), TransportError> {
        let mut headers = self.properties.headers().clone().unwrap_or_default();
        headers.insert(
            wire::HEADER_DEAD_REASON.into(),
            AMQPValue::LongString(reason.into()),
        );
        // A header value is bounded: the words are cut to 1,000 characters.
        let detail: String = detail.chars().take(1000).collect();
        headers.insert(
            wire::HEADER_DEAD_DETAIL.into(),
            AMQPValue::LongString(detail.as_str().into()),
        );
        let props = self
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2);
        let publish = async {
            self.channel
                .basic_publish(
                    wire::EXCHANGE_DEAD.into(),
                    self.dead_queue.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &self.body,
                    props,
                )
                .await?
                .await
        };
        match tokio::time::timeout(DEAD_LETTER_WAIT, publish).await {
            Ok(Ok(Confirmation::Ack(None))) => self.ack().await,
            other => {
                tracing::warn!(outcome = ?other.map(|r| r.map(|c| c.is_ack())), "the dead-letter copy was not confirmed; rejecting the return without its reason");
                self.dead_letter().await
            }
        }
    }

    /// Rejects it without requeueing: the broker moves it to the dead-letter queue
    /// (`<return queue>.dead`), where it stays for a person to look at.
    pub async fn dead_letter(self) -> Result<(), TransportError> {
        self.acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::warn!(error = %e, "reject of a return failed");
                TransportError::Closed
            })
    }
}

/// The return queue's consumer, on its own connection (closed when dropped:
/// the returns not acked go back to the queue).
pub struct ReturnStream {
    conn: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
    dead_queue: String,
}

/// The longest wait for the broker's confirm of a dead-lettered copy.
const DEAD_LETTER_WAIT: Duration = Duration::from_secs(10);

impl ReturnStream {
    /// Closes the consumer's connection cleanly (returns not acked go back to the queue).
    pub async fn close(self) {
        close_link(&self.conn, None).await;
    }

    /// The next return; `Some(Err(Closed))` or `None` once the link is lost:
    /// then drop the stream and call [`AmqpTransport::returns`] again.
    pub async fn next(&mut self) -> Option<Result<ReturnMessage, TransportError>> {
        match self.consumer.next().await? {
            Ok(delivery) => {
                let props = &delivery.properties;
                Some(Ok(ReturnMessage {
                    message_id: props.message_id().as_ref().map(|s| s.to_string()),
                    message_type: props.kind().as_ref().map(|s| s.to_string()),
                    properties: delivery.properties.clone(),
                    body: delivery.data,
                    acker: delivery.acker,
                    channel: self.channel.clone(),
                    dead_queue: self.dead_queue.clone(),
                }))
            }
            Err(e) => {
                tracing::warn!(error = %e, "return queue consumer stopped");
                Some(Err(TransportError::Closed))
            }
        }
    }
}

impl AmqpConfig {
    /// Every broker address, `url` first.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.url.as_str()).chain(self.fallback_urls.iter().map(String::as_str))
    }
}

impl AmqpTransport {
    /// Connects, opens a channel with publisher confirms and declares the
    /// topology (topic exchanges [`wire::EXCHANGE_AMO`] and
    /// [`wire::EXCHANGE_AMC`], durable; the return queue, durable quorum).
    /// Fails when the broker cannot be reached within `publish_timeout`.
    pub async fn connect(cfg: &AmqpConfig) -> Result<AmqpTransport, TransportError> {
        let t = AmqpTransport::new(cfg);
        let link = t.open("fsed").await?;
        *t.link.lock().await = Some(link);
        Ok(t)
    }

    /// Self-diagnosis: a connection of its own declares the topology (exchanges, return queue
    /// and its dead-letter queue, as at every connect) and reads the return queue's depth.
    pub async fn check(&self) -> Result<String, TransportError> {
        let (conn, channel) = self.open("fsed-doctor").await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let depth = |q: &str| {
            let channel = channel.clone();
            let q = q.to_string();
            async move {
                channel
                    .queue_declare(q.as_str().into(), passive, FieldTable::default())
                    .await
                    .map(|q| (q.message_count(), q.consumer_count()))
                    .map_err(|e| TransportError::Connect(format!("queue {q}: {e}")))
            }
        };
        let (returns, consumers) = depth(&self.cfg.return_queue).await?;
        let (dead, _) = depth(&wire::dead_letter_queue(&self.cfg.return_queue)).await?;
        let _ = conn.close(200, "doctor done".into()).await;
        Ok(format!(
            "{}: reachable; exchanges {}, {} and {} declared; return queue {} ({returns} waiting, {consumers} consumer(s)), {dead} dead letter(s)",
            self.current_broker(),
            wire::EXCHANGE_AMO,
            wire::EXCHANGE_AMC,
            wire::EXCHANGE_DEAD,
            self.cfg.return_queue,
        ))
    }

    /// The transport without connecting yet: the first [`publish_lot`] or
    /// [`returns`] connects (for a daemon that starts while the broker is down).
    ///
    /// [`publish_lot`]: AmqpTransport::publish_lot
    /// [`returns`]: AmqpTransport::returns
    pub fn new(cfg: &AmqpConfig) -> AmqpTransport {
        AmqpTransport {
            cfg: cfg.clone(),
            link: Mutex::new(None),
            preferred: AtomicUsize::new(0),
        }
    }

    /// The broker that answered last (redacted), for messages.
    pub fn current_broker(&self) -> String {
        let urls: Vec<&str> = self.cfg.urls().collect();
        let i = self.preferred.load(Ordering::Relaxed) % urls.len();
        redact(urls[i])
    }

    /// A new connection and channel (confirms on), with the topology declared, on the first
    /// broker that answers: the one that answered last, then the others in turn. The error is
    /// the last broker's.
    async fn open(&self, name: &str) -> Result<(Connection, Channel), TransportError> {
        let urls: Vec<&str> = self.cfg.urls().collect();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = TransportError::Connect("no broker address".into());
        for k in 0..urls.len() {
            let i = (start + k) % urls.len();
            match self.open_at(urls[i], name).await {
                Ok(link) => {
                    if i != start % urls.len() {
                        tracing::warn!(broker = %redact(urls[i]), connection = name, "moved to another broker of the cluster");
                    }
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(link);
                }
                Err(e) => {
                    if urls.len() > 1 {
                        tracing::warn!(error = %e, connection = name, "broker out of reach, trying the next one");
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// [`AmqpTransport::open`] on one broker.
    async fn open_at(
        &self,
        url: &str,
        name: &str,
    ) -> Result<(Connection, Channel), TransportError> {
        let shown = redact(url);
        // Parsed here: the parser's own message quotes the whole URL, password included.
        let uri: AMQPUri = url
            .parse()
            .map_err(|_| TransportError::Connect(format!("invalid broker URL {shown}")))?;
        let setup = |step: &'static str| {
            let shown = shown.clone();
            move |e: lapin::Error| TransportError::Connect(format!("{shown}: {step}: {e}"))
        };
        let fut = async {
            let props = ConnectionProperties::default().with_connection_name(name.into());
            let conn = Connection::connect_uri(uri, props)
                .await
                .map_err(setup("connect"))?;
            let channel = conn.create_channel().await.map_err(setup("channel"))?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(setup("confirm_select"))?;
            for exchange in [wire::EXCHANGE_AMO, wire::EXCHANGE_AMC] {
                channel
                    .exchange_declare(
                        exchange.into(),
                        ExchangeKind::Topic,
                        ExchangeDeclareOptions {
                            durable: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(setup("exchange_declare"))?;
            }
            // Dead letters: a return fsed cannot apply (unreadable, for an unknown lot) is
            // rejected into `<return queue>.dead` through the direct exchange `fsed.dead`.
            channel
                .exchange_declare(
                    wire::EXCHANGE_DEAD.into(),
                    ExchangeKind::Direct,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(setup("exchange_declare"))?;
            let dead = wire::dead_letter_queue(&self.cfg.return_queue);
            let quorum = || {
                let mut args = FieldTable::default();
                args.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString("quorum".into()),
                );
                args
            };
            let durable = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            channel
                .queue_declare(dead.as_str().into(), durable, quorum())
                .await
                .map_err(setup("queue_declare"))?;
            channel
                .queue_bind(
                    dead.as_str().into(),
                    wire::EXCHANGE_DEAD.into(),
                    dead.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(setup("queue_bind"))?;
            let mut args = quorum();
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(wire::EXCHANGE_DEAD.into()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(dead.as_str().into()),
            );
            channel
                .queue_declare(self.cfg.return_queue.as_str().into(), durable, args)
                .await
                .map_err(setup("queue_declare"))?;
            Ok((conn, channel))
        };
        let link = tokio::time::timeout(self.cfg.publish_timeout, fut)
            .await
            .map_err(|_| {
                TransportError::Connect(format!(
                    "{shown}: no answer within {:?}",
                    self.cfg.publish_timeout
                ))
            })??;
        tracing::info!(broker = %shown, connection = name, "connected to the broker");
        Ok(link)
    }

    /// Publishes one signed lot; see [`AmqpTransport::publish_lots`].
    pub async fn publish_lot(
        &self,
        lot_id: &str,
        destination: &str,
        der: &[u8],
    ) -> Result<(), TransportError> {
        self.publish_lots(&[(lot_id, destination, der)])
            .await
            .pop()
            .unwrap_or(Err(TransportError::Closed))
    }

    /// Publishes signed lots to [`wire::EXCHANGE_AMO`] with routing key = their
    /// destination, `mandatory`, persistent, `message_id` = lot id, `type` =
    /// [`wire::TYPE_LOT`], `reply_to` = the return queue: all of them first
    /// (the caller bounds how many: the window of lots in flight), then waits
    /// for each confirm, all within `publish_timeout`. One result per lot, in order.
    ///
    /// `Ok` only on a plain ack. A nack, a timeout, a broken link, or an ack
    /// carrying the returned message ([`TransportError::Unroutable`]: no queue
    /// bound for the destination) is an `Err`: the caller keeps that lot and
    /// retries later. Connects first when there is no live link.
    pub async fn publish_lots(
        &self,
        lots: &[(&str, &str, &[u8])],
    ) -> Vec<Result<(), TransportError>> {
        self.publish_to(wire::EXCHANGE_AMO, wire::TYPE_LOT, lots)
            .await
    }

    /// [`AmqpTransport::publish_lots`] for DRE lots: to [`wire::EXCHANGE_AMC`] with routing key
    /// = the AMC number, `type` = [`wire::TYPE_DRE_LOT`], `message_id` = `<lot id>/<AMC>`.
    pub async fn publish_dre_lots(
        &self,
        lots: &[(&str, &str, &[u8])],
    ) -> Vec<Result<(), TransportError>> {
        self.publish_to(wire::EXCHANGE_AMC, wire::TYPE_DRE_LOT, lots)
            .await
    }

    /// Publishes one attachment lot to [`wire::EXCHANGE_AMO`] with routing key = its
    /// destination, `type` = [`wire::TYPE_ATTACHMENT_LOT`], `message_id` = its id.
    pub async fn publish_attachment_lot(
        &self,
        lot_id: &str,
        destination: &str,
        der: &[u8],
    ) -> Result<(), TransportError> {
        self.publish_to(
            wire::EXCHANGE_AMO,
            wire::TYPE_ATTACHMENT_LOT,
            &[(lot_id, destination, der)],
        )
        .await
        .pop()
        .unwrap_or(Err(TransportError::Closed))
    }

    /// Publishes `(message id, routing key, body)` messages to `exchange` (see
    /// [`AmqpTransport::publish_lots`]).
    async fn publish_to(
        &self,
        exchange: &str,
        message_type: &str,
        lots: &[(&str, &str, &[u8])],
    ) -> Vec<Result<(), TransportError>> {
        let mut link = self.link.lock().await;
        if link
            .as_ref()
            .is_none_or(|(c, ch)| !c.status().connected() || !ch.status().connected())
        {
            *link = None;
            match self.open("fsed").await {
                Ok(l) => *link = Some(l),
                Err(e) => {
                    let shown = e.to_string();
                    return lots
                        .iter()
                        .map(|_| Err(TransportError::Connect(shown.clone())))
                        .collect();
                }
            }
        }
        let Some((_, channel)) = link.as_ref() else {
            return lots.iter().map(|_| Err(TransportError::Closed)).collect();
        };
        let failed = |e: lapin::Error| {
            if is_lost(&e) {
                TransportError::Closed
            } else {
                TransportError::Publish(e.to_string())
            }
        };
        let deadline = tokio::time::Instant::now() + self.cfg.publish_timeout;
        let mut pending = Vec::with_capacity(lots.len());
        for (lot_id, destination, der) in lots {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id((*lot_id).into())
                .with_type(message_type.into())
                .with_content_type(wire::CONTENT_TYPE_DER.into())
                .with_reply_to(self.cfg.return_queue.as_str().into());
            let publish = channel.basic_publish(
                exchange.into(),
                (*destination).into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                der,
                props,
            );
            pending.push(match tokio::time::timeout_at(deadline, publish).await {
                Err(_) => Err(TransportError::Timeout),
                Ok(r) => r.map_err(failed),
            });
        }
        let mut results = Vec::with_capacity(lots.len());
        for ((lot_id, destination, _), p) in lots.iter().zip(pending) {
            let result = match p {
                Err(e) => Err(e),
                Ok(confirm) => match tokio::time::timeout_at(deadline, confirm).await {
                    Err(_) => Err(TransportError::Timeout),
                    Ok(Err(e)) => Err(failed(e)),
                    // The broker sends basic.return before the ack of an unroutable
                    // mandatory message; lapin hands it over inside the confirmation.
                    Ok(Ok(Confirmation::Ack(None))) => Ok(()),
                    Ok(Ok(Confirmation::Ack(Some(_)))) => Err(TransportError::Unroutable {
                        destination: destination.to_string(),
                    }),
                    Ok(Ok(Confirmation::Nack(_))) => Err(TransportError::Nack),
                    Ok(Ok(Confirmation::NotRequested)) => Err(TransportError::Publish(
                        "publisher confirms are not enabled on the channel".into(),
                    )),
                },
            };
            match &result {
                Ok(()) => tracing::debug!(lot = lot_id, destination, "lot confirmed by the broker"),
                Err(e) => tracing::warn!(lot = lot_id, destination, error = %e, "lot not sent"),
            }
            results.push(result);
        }
        if results.iter().any(|r| {
            matches!(
                r,
                Err(TransportError::Timeout | TransportError::Publish(_) | TransportError::Closed)
            )
        }) {
            // The channel's state is unknown: start afresh next time.
            *link = None;
        }
        results
    }

    /// Starts consuming the return queue on a connection of its own
    /// (prefetch 32); each return is acked by the caller once committed.
    pub async fn returns(&self) -> Result<ReturnStream, TransportError> {
        let (conn, channel) = self.open("fsed-returns").await?;
        let setup = |step: &'static str| {
            move |e: lapin::Error| TransportError::Connect(format!("{step}: {e}"))
        };
        channel
            .basic_qos(RETURNS_PREFETCH, BasicQosOptions::default())
            .await
            .map_err(setup("basic_qos"))?;
        let consumer = channel
            .basic_consume(
                self.cfg.return_queue.as_str().into(),
                "fsed-returns".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(setup("basic_consume"))?;
        Ok(ReturnStream {
            conn,
            channel,
            consumer,
            dead_queue: wire::dead_letter_queue(&self.cfg.return_queue),
        })
    }

    /// Closes the publishing channel and connection (AMQP close, reply 200) so the broker
    /// sees a clean goodbye; a later send would connect again.
    pub async fn close(&self) {
        if let Some((conn, channel)) = self.link.lock().await.take() {
            close_link(&conn, Some(&channel)).await;
        }
    }
}

/// Closes a channel (if any) then its connection, at most [`CLOSE_WAIT`] each; failures are
/// logged (the link may already be gone).
async fn close_link(conn: &Connection, channel: Option<&Channel>) {
    let text = || "fsed stopping".into();
    if let Some(channel) = channel {
        match tokio::time::timeout(CLOSE_WAIT, channel.close(200, text())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "closing the AMQP channel"),
            Err(_) => tracing::debug!("closing the AMQP channel timed out"),
        }
    }
    match tokio::time::timeout(CLOSE_WAIT, conn.close(200, text())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "closing the AMQP connection"),
        Err(_) => tracing::debug!("closing the AMQP connection timed out"),
    }
}

/// The longest wait for the broker to answer a close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            redact("amqps://fsed:s3cret@broker:5671/%2f"),
            "amqps://***@broker:5671/%2f"
        );
        assert_eq!(
            redact("amqp://127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://u:p@ss@h/"), "amqp://***@h/");
        let cfg = AmqpConfig {
            url: "amqp://u:pw@h/".into(),
            ..Default::default()
        };
        assert!(!format!("{cfg:?}").contains("pw"));
        assert!(!format!("{:?}", AmqpTransport::new(&cfg)).contains("pw"));
    }

    #[tokio::test]
    async fn a_bad_url_is_refused_without_its_password() {
        let t = AmqpTransport::new(&AmqpConfig {
            url: "amqp://u:s3cret@[::1".into(),
            ..Default::default()
        });
        let err = t.publish_lot("L", "d", b"x").await.unwrap_err();
        assert!(matches!(err, TransportError::Connect(_)), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[tokio::test]
    async fn every_broker_is_tried_in_turn_and_none_shows_its_password() {
        let gone = |_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        };
        let (a, b) = (gone(0), gone(1));
        let t = AmqpTransport::new(&AmqpConfig {
            url: format!("amqp://u:pw-one@{a}/%2f"),
            fallback_urls: vec![format!("amqp://u:pw-two@{b}/%2f")],
            ..Default::default()
        });
        assert_eq!(t.current_broker(), format!("amqp://***@{a}/%2f"));
        let err = t.publish_lot("L", "d", b"x").await.unwrap_err();
        // The error is the last broker's: the second was tried after the first.
        assert!(err.to_string().contains(&b.to_string()), "{err}");
        assert!(!err.to_string().contains("pw-"), "{err}");
        assert!(!format!("{t:?}").contains("pw-"));
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_a_connect_error_without_the_password() {
        // A port the system just gave and took back, where nothing listens: refused, not a
        // fixed port.
        let gone = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = AmqpTransport::connect(&AmqpConfig {
            url: format!("amqp://u:s3cret@{gone}/%2f"),
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert!(matches!(err, TransportError::Connect(_)), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
