//! The AMQP transport (RabbitMQ, AMQP 0-9-1, lapin). At every connect it
//! declares its topology: topic exchanges for AMO and AMC lots (durable)
//! and fsed's return queue (durable, quorum). A lot is published persistent,
//! `mandatory`, with `message_id` = lot id and `reply_to` = the return
//! queue; it counts as sent only on the broker's confirm — a nack, a timeout
//! or a returned (unroutable) message is a failure and the lot stays queued.
//! The connection is fsed's own: on any error it is dropped and made anew at
//! the next call (lapin's automatic recovery is not used). The URL may carry
//! credentials, so it is never logged or put in an error.

use std::time::Duration;

use fse_formats::wire;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;

/// AMQP settings.
#[derive(Clone)]
pub struct AmqpConfig {
    /// Broker URL (`amqp://` or `amqps://`, credentials allowed).
    pub url: String,
    /// fsed's return queue.
    pub return_queue: String,
    /// Longest wait for a connection, a publish and its confirm.
    pub publish_timeout: Duration,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            url: "amqp://127.0.0.1:5672/%2f".into(),
            return_queue: wire::DEFAULT_RETURN_QUEUE.into(),
            publish_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &redact(&self.url))
            .field("return_queue", &self.return_queue)
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
    /// No connection to the broker.
    #[error("cannot reach the broker at {0}")]
    Connect(String),
    /// The broker refused an operation.
    #[error("broker: {0}")]
    Broker(String),
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
}

/// A connection to the broker, made anew when lost.
pub struct AmqpTransport {
    cfg: AmqpConfig,
    link: Mutex<Option<(Connection, Channel)>>,
}

/// One ARL (or other return) taken from the return queue.
pub struct ReturnMessage {
    /// Its body (DER).
    pub body: Vec<u8>,
    delivery: lapin::message::Delivery,
}

impl ReturnMessage {
    /// Acknowledges it to the broker: call only after the commit.
    pub async fn ack(self) -> Result<(), TransportError> {
        self.delivery
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| TransportError::Broker(e.to_string()))
    }
}

/// The return queue's consumer, on its own connection.
pub struct ReturnStream {
    _conn: Connection,
    consumer: lapin::Consumer,
}

impl ReturnStream {
    /// The next return; `None` when the consumer ended.
    pub async fn next(&mut self) -> Option<Result<ReturnMessage, TransportError>> {
        match self.consumer.next().await? {
            Ok(delivery) => Some(Ok(ReturnMessage {
                body: delivery.data.clone(),
                delivery,
            })),
            Err(e) => Some(Err(TransportError::Broker(e.to_string()))),
        }
    }
}

fn broker(e: lapin::Error) -> TransportError {
    TransportError::Broker(e.to_string())
}

impl AmqpTransport {
    /// Connects and declares the topology; fails when the broker cannot be reached.
    pub async fn connect(cfg: &AmqpConfig) -> Result<AmqpTransport, TransportError> {
        let t = AmqpTransport {
            cfg: cfg.clone(),
            link: Mutex::new(None),
        };
        let link = t.open().await?;
        *t.link.lock().await = Some(link);
        Ok(t)
    }

    async fn open(&self) -> Result<(Connection, Channel), TransportError> {
        let fut = async {
            let conn = Connection::connect(&self.cfg.url, ConnectionProperties::default())
                .await
                .map_err(|_| TransportError::Connect(redact(&self.cfg.url)))?;
            let channel = conn.create_channel().await.map_err(broker)?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(broker)?;
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
                    .map_err(broker)?;
            }
            let mut args = FieldTable::default();
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
            channel
                .queue_declare(
                    self.cfg.return_queue.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    args,
                )
                .await
                .map_err(broker)?;
            Ok((conn, channel))
        };
        tokio::time::timeout(self.cfg.publish_timeout, fut)
            .await
            .map_err(|_| TransportError::Connect(redact(&self.cfg.url)))?
    }

    /// Publishes one signed lot to the AMO exchange and waits for the broker's confirm.
    pub async fn publish_lot(
        &self,
        lot_id: &str,
        destination: &str,
        der: &[u8],
    ) -> Result<(), TransportError> {
        let mut link = self.link.lock().await;
        if link
            .as_ref()
            .is_none_or(|(c, ch)| !c.status().connected() || !ch.status().connected())
        {
            *link = Some(self.open().await?);
        }
        let Some((_, channel)) = link.as_ref() else {
            return Err(TransportError::Connect(redact(&self.cfg.url)));
        };
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(lot_id.into())
            .with_type(wire::TYPE_LOT.into())
            .with_content_type(wire::CONTENT_TYPE_DER.into())
            .with_reply_to(self.cfg.return_queue.as_str().into());
        let publish = async {
            channel
                .basic_publish(
                    wire::EXCHANGE_AMO.into(),
                    destination.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    der,
                    props,
                )
                .await
                .map_err(broker)?
                .await
                .map_err(broker)
        };
        let result = match tokio::time::timeout(self.cfg.publish_timeout, publish).await {
            Err(_) => Err(TransportError::Timeout),
            Ok(Err(e)) => Err(e),
            Ok(Ok(confirm)) => {
                if confirm.is_nack() {
                    Err(TransportError::Nack)
                } else if confirm.take_message().is_some() {
                    Err(TransportError::Unroutable {
                        destination: destination.to_string(),
                    })
                } else {
                    Ok(())
                }
            }
        };
        if matches!(
            result,
            Err(TransportError::Timeout | TransportError::Broker(_))
        ) {
            // The channel's state is unknown: start afresh next time.
            *link = None;
        }
        result
    }

    /// Starts consuming the return queue on a connection of its own.
    pub async fn returns(&self) -> Result<ReturnStream, TransportError> {
        let (conn, channel) = self.open().await?;
        channel
            .basic_qos(32, BasicQosOptions::default())
            .await
            .map_err(broker)?;
        let consumer = channel
            .basic_consume(
                self.cfg.return_queue.as_str().into(),
                "fsed-returns".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        Ok(ReturnStream {
            _conn: conn,
            consumer,
        })
    }
}

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
        let cfg = AmqpConfig {
            url: "amqp://u:pw@h/".into(),
            ..Default::default()
        };
        assert!(!format!("{cfg:?}").contains("pw"));
    }
}
