//! Lots published to the real RabbitMQ broker with publisher confirms, one
//! lot in flight as fsed sends them, through `AmqpTransport::publish_lot`
//! (persistent, `mandatory`, `message_id`, checked confirm), beside the raw
//! rate of the same broker for the same message size and pattern (lapin
//! alone: publish, await the confirm) measured in the same run. Needs the
//! broker `tests/run` starts: `cargo bench -p fsed --bench publish`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use fse_formats::wire;
use fsed::transport::amqp::{AmqpConfig, AmqpTransport};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm};

const URL: &str = "amqp://127.0.0.1:5672/%2f";
const LOT_SHEETS: u64 = 100;

fn rate(label: &str, n: u64, d: Duration, extra: &str) -> f64 {
    let r = n as f64 / d.as_secs_f64();
    println!(
        "{label:<62} {r:>9.0} lots/s {extra}  ({n} in {:.2} s)",
        d.as_secs_f64()
    );
    r
}

/// How many lots each measure publishes.
const N: u64 = 2000;

/// A window of lots in flight: all published, then their confirms awaited.
const WINDOW: usize = fsed::transport::DEFAULT_WINDOW;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bench = Bench::setup().await;
        bench.warm_up().await;
        let raw = bench.raw_one_in_flight().await;
        let ours = bench.ours_one_in_flight().await;
        println!("{:<62} {:>9.0} %", "  of the raw rate", ours / raw * 100.0);
        let raw_w = bench.raw_window().await;
        let ours_w = bench.ours_window().await;
        println!(
            "{:<62} {:>9.0} %",
            "  of the raw rate",
            ours_w / raw_w * 100.0
        );
        bench.tear_down().await;
    });
}

/// The broker's link, the transport under measure and the lot they publish.
struct Bench {
    /// Lapin's connection, held for the run like the channel on it.
    _conn: Connection,
    /// A confirming channel of lapin's own: the raw limit.
    ch: Channel,
    transport: AmqpTransport,
    /// The routing key (and name stem) of this run.
    key: String,
    /// The durable queue bound to `key`.
    queue: String,
    /// A 100-sheet signed lot, as fsed makes them.
    der: Vec<u8>,
}

impl Bench {
    /// Connects lapin and the transport, declares and binds a durable queue for this run's key.
    async fn setup() -> Bench {
        let der = fse_simulator::insurer::sample_lot("bench-lot", LOT_SHEETS)
            .to_der()
            .unwrap();
        let key = format!("bench{}", std::process::id());
        let conn = Connection::connect(URL, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        // The transport declares the exchanges; bind a queue for the bench's routing key.
        let transport = AmqpTransport::connect(&AmqpConfig {
            url: URL.into(),
            return_queue: format!("fsed.returns.{key}"),
            ..Default::default()
        })
        .await
        .unwrap();
        let queue = format!("bench.{key}");
        // Durable, like an insurer's queue: a persistent message is confirmed once on disk.
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            queue.as_str().into(),
            wire::EXCHANGE_AMO.into(),
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        println!("lot: {LOT_SHEETS} sheets, {} bytes", der.len());
        Bench {
            _conn: conn,
            ch,
            transport,
            key,
            queue,
            der,
        }
    }

    /// A hundred lots through the transport before any measure.
    async fn warm_up(&self) {
        for i in 0..100 {
            self.transport
                .publish_lot(&format!("warm-{i}"), &self.key, &self.der)
                .await
                .unwrap();
        }
    }

    /// The raw publish both limits are measured with: persistent, mandatory, a message id.
    async fn raw_publish(&self, id: String) -> lapin::Result<PublisherConfirm> {
        self.ch
            .basic_publish(
                wire::EXCHANGE_AMO.into(),
                self.key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &self.der,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(id.into()),
            )
            .await
    }

    /// The raw rate, one lot in flight.
    async fn raw_one_in_flight(&self) -> f64 {
        let t = Instant::now();
        for i in 0..N {
            let confirm = self
                .raw_publish(format!("raw-{i}"))
                .await
                .unwrap()
                .await
                .unwrap();
            assert!(confirm.is_ack());
        }
        rate(
            "limit: raw publish + confirm, one in flight (lapin)",
            N,
            t.elapsed(),
            "",
        )
    }

    /// The transport's rate, one lot in flight.
    async fn ours_one_in_flight(&self) -> f64 {
        let t = Instant::now();
        for i in 0..N {
            self.transport
                .publish_lot(&format!("lot-{i}"), &self.key, &self.der)
                .await
                .unwrap();
        }
        let d = t.elapsed();
        rate(
            "AmqpTransport::publish_lot (checked confirm, mandatory)",
            N,
            d,
            &format!(
                "= {:.0} sheets/s",
                N as f64 * LOT_SHEETS as f64 / d.as_secs_f64()
            ),
        )
    }

    /// The raw rate, a window of lots in flight.
    async fn raw_window(&self) -> f64 {
        let windows = N / WINDOW as u64;
        let t = Instant::now();
        for i in 0..windows {
            let confirms =
                Vec::from_iter((0..WINDOW).map(|j| self.raw_publish(format!("raww-{i}-{j}"))));
            let mut pending = Vec::with_capacity(WINDOW);
            for c in confirms {
                pending.push(c.await.unwrap());
            }
            for p in pending {
                assert!(p.await.unwrap().is_ack());
            }
        }
        rate(
            &format!("limit: raw publish + confirm, {WINDOW} in flight (lapin)"),
            windows * WINDOW as u64,
            t.elapsed(),
            "",
        )
    }

    /// The transport's rate, a window of lots in flight.
    async fn ours_window(&self) -> f64 {
        let windows = N / WINDOW as u64;
        let ids: Vec<String> = (0..windows * WINDOW as u64)
            .map(|i| format!("win-{i}"))
            .collect();
        let t = Instant::now();
        for chunk in ids.chunks(WINDOW) {
            let lots: Vec<(&str, &str, &[u8])> = chunk
                .iter()
                .map(|id| (id.as_str(), self.key.as_str(), self.der.as_slice()))
                .collect();
            for r in self.transport.publish_lots(&lots).await {
                r.unwrap();
            }
        }
        let d = t.elapsed();
        rate(
            &format!("AmqpTransport::publish_lots, window {WINDOW}"),
            windows * WINDOW as u64,
            d,
            &format!(
                "= {:.0} sheets/s",
                (windows * WINDOW as u64) as f64 * LOT_SHEETS as f64 / d.as_secs_f64()
            ),
        )
    }

    /// The bench's queue and the transport's return queue deleted.
    async fn tear_down(&self) {
        self.ch
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        self.ch
            .queue_delete(
                format!("fsed.returns.{}", self.key).as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await
            .ok();
    }
}
