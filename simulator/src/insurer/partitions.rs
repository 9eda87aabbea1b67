//! Competing insurer instances, their work partitioned without a shared store
//! (`fse-sim insurer --partitions N`).
//!
//! The lots' topic exchange is bound (with the insurer's binding) to a consistent-hash
//! exchange `<queue>.hash` that hashes each lot's `message_id` (its lot id) onto N partition
//! queues `<queue>.p0` … `<queue>.p<N-1>`: quorum queues with `x-single-active-consumer`.
//! Every instance consumes every partition; the broker hands each partition to one consumer
//! at a time, and when that instance dies (its connection gone) to the next. So a lot is
//! judged by one instance; after a crash the lots it had not acknowledged are delivered to
//! the next one, which judges them again to the same verdict (judging is deterministic) and
//! the sender applies the repeated ARL once.
//!
//! With `--instance K/M` the partitions are spread: instance K takes its own partitions
//! (those with `p mod M = K - 1`) first, then waits for each other partition to have a
//! consumer (its own instance's) before standing by on it, at most
//! [`Partitions::standby_wait`].

use std::pin::Pin;
use std::time::Duration;

use futures_lite::{Stream, StreamExt};
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ExchangeBindOptions, ExchangeDeclareOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ExchangeKind};
use tokio::sync::watch;

use super::amqp::{amqp_err, connect, AmqpInsurerConfig, PREFETCH};
use super::{stopped, InsurerError};

impl super::InsurerArgs {
    /// The partitions of `--partitions` and `--instance` (`None`: one queue).
    pub fn partition_plan(&self) -> Result<Option<Partitions>, InsurerError> {
        if self.partitions == 0 {
            return Ok(None);
        }
        Ok(Some(Partitions {
            count: self.partitions,
            instance: self
                .instance
                .as_deref()
                .map(Partitions::parse_instance)
                .transpose()?,
        }))
    }
}

/// The deliveries of one or several consumers, merged.
pub(super) type Deliveries =
    Pin<Box<dyn Stream<Item = Result<lapin::message::Delivery, lapin::Error>> + Send>>;

/// Partition queues at most.
pub const MAX_PARTITIONS: u32 = 256;

/// How an instance takes its share of the partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitions {
    /// Partition queues.
    pub count: u32,
    /// `(K, M)`: this is instance K (1-based) of M, taking its own partitions first.
    pub instance: Option<(u32, u32)>,
}

impl Partitions {
    /// The longest wait for another instance to take its own partitions before standing by.
    pub fn standby_wait(&self) -> Duration {
        if self.instance.is_some() {
            Duration::from_secs(5)
        } else {
            Duration::ZERO
        }
    }

    /// Whether partition `p` is this instance's own (all are, without `--instance`).
    pub fn is_own(&self, p: u32) -> bool {
        self.instance.is_none_or(|(k, m)| p % m == k - 1)
    }

    /// Parses `K/M` (1 ≤ K ≤ M ≤ 256).
    pub fn parse_instance(text: &str) -> Result<(u32, u32), InsurerError> {
        let bad = || {
            InsurerError::Usage(format!(
                "--instance {text:?}: expected K/M, 1 <= K <= M <= {MAX_PARTITIONS}"
            ))
        };
        let (k, m) = text.split_once('/').ok_or_else(bad)?;
        let (k, m): (u32, u32) = (
            k.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if k == 0 || k > m || m > MAX_PARTITIONS {
            return Err(bad());
        }
        Ok((k, m))
    }

    /// Connects, declares the partitioned topology and consumes every partition (own ones
    /// first); the deliveries of all, merged.
    pub(super) async fn consume(
        &self,
        cfg: &AmqpInsurerConfig,
        uri: AMQPUri,
        base: &str,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(Connection, Channel, Deliveries), InsurerError> {
        let (conn, channel) = connect(cfg, uri, base).await?;
        let queues = self.declare(cfg, &channel, base).await?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(amqp_err("basic_qos"))?;
        let mut merged: Option<Deliveries> = None;
        let (own, others): (Vec<_>, Vec<_>) = queues
            .iter()
            .enumerate()
            .partition(|(p, _)| self.is_own(*p as u32));
        for (p, queue) in own.into_iter().chain(others) {
            if !self.is_own(p as u32) {
                // Leave it to its own instance when that one comes: poll until the partition
                // has a consumer, or the wait is over (that instance is not there).
                let deadline = tokio::time::Instant::now() + self.standby_wait();
                while consumers(&channel, queue).await? == 0
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::select! {
                        _ = stopped(&mut stop) => return Err(InsurerError::Amqp("stopped".into())),
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            }
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    format!("fse-sim-insurer-p{p}").into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(amqp_err("basic_consume"))?;
            merged = Some(match merged {
                None => Box::pin(consumer),
                Some(m) => Box::pin(m.race(consumer)),
            });
        }
        let merged = merged.ok_or_else(|| InsurerError::Usage("--partitions 0".into()))?;
        Ok((conn, channel, merged))
    }

    /// The hash exchange bound to the lots' exchange, the partition queues bound to it; their
    /// names in order.
    async fn declare(
        &self,
        cfg: &AmqpInsurerConfig,
        channel: &Channel,
        base: &str,
    ) -> Result<Vec<String>, InsurerError> {
        let hash = format!("{base}.hash");
        let mut args = FieldTable::default();
        // Hash the lot id, not the routing key (one organism code for all lots of an AMO).
        args.insert(
            "hash-property".into(),
            AMQPValue::LongString("message_id".into()),
        );
        channel
            .exchange_declare(
                hash.as_str().into(),
                ExchangeKind::Custom("x-consistent-hash".into()),
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await
            .map_err(amqp_err("exchange_declare (x-consistent-hash: is the plugin rabbitmq_consistent_hash_exchange on?)"))?;
        channel
            .exchange_bind(
                hash.as_str().into(),
                cfg.kind.exchange().into(),
                cfg.binding.as_str().into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp_err("exchange_bind"))?;
        let mut queues = Vec::new();
        for p in 0..self.count {
            let queue = format!("{base}.p{p}");
            let mut args = FieldTable::default();
            args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
            // Equal weights: each partition takes an equal share of the hash ring.
            super::amqp::declare_bound_quorum(channel, &queue, args, &hash, "1").await?;
            queues.push(queue);
        }
        Ok(queues)
    }
}

/// The consumers a queue has now.
async fn consumers(channel: &Channel, queue: &str) -> Result<u32, InsurerError> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map(|q| q.consumer_count())
        .map_err(amqp_err("queue_declare passive"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_split_the_partitions_and_bad_ones_are_refused() {
        let (k, m) = Partitions::parse_instance("2/3").unwrap();
        let p = Partitions {
            count: 6,
            instance: Some((k, m)),
        };
        // Instance 2 of 3 owns p mod 3 = 1: partitions 1 and 4.
        let own: Vec<u32> = (0..6).filter(|&q| p.is_own(q)).collect();
        assert_eq!(own, [1, 4]);
        let all = Partitions {
            count: 6,
            instance: None,
        };
        assert_eq!((0..6).filter(|&q| all.is_own(q)).count(), 6);
        for bad in ["0/3", "4/3", "3", "a/b", "1/999"] {
            let e = Partitions::parse_instance(bad).unwrap_err().to_string();
            assert!(e.contains("--instance"), "{bad}: {e}");
        }
    }
}
