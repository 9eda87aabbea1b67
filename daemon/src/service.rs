//! Wiring: opens the queue, starts the card thread, the transport, the
//! batcher, the returns reader and the socket API, then waits for SIGTERM or
//! SIGINT and stops them in order (API first, then the rest).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::sync::Notify;

use fse_formats::pki::TrustStore;

use crate::batcher::Batcher;
use crate::cards::{Backend, Cards, VirtualReaderConfig};
use crate::config::{CardBackend, Config, TransportKind};
use crate::shutdown;
use crate::store::Store;
use crate::transport::amqp::{AmqpConfig, AmqpTransport};
use crate::transport::spool::Spool;
use crate::transport::Transport;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The database cannot be used.
    #[error("database: {0}")]
    Store(#[from] fse_queue::QueueError),
    /// The cards cannot be reached.
    #[error("cards: {0}")]
    Cards(#[from] crate::cards::CardsError),
    /// The socket or a directory.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The trust directory.
    #[error("trust directory {dir}: {reason}")]
    Trust {
        /// Directory.
        dir: String,
        /// What is wrong, with the file.
        reason: String,
    },
    /// The broker.
    #[error("broker: {0}")]
    Broker(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// Reads a trust directory: `root.pem` is required, `ca.pem` and `crl.pem` are optional.
pub fn load_trust(dir: &std::path::Path) -> Result<TrustStore, StartError> {
    let fail = |reason: String| StartError::Trust {
        dir: dir.display().to_string(),
        reason,
    };
    let mut store = TrustStore::new();
    for (file, required, crl) in [
        ("root.pem", true, false),
        ("ca.pem", false, false),
        ("crl.pem", false, true),
    ] {
        let bytes = match std::fs::read(dir.join(file)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
            Err(e) => return Err(fail(format!("{file}: {e}"))),
        };
        let added = if crl {
            store.add_crls(&bytes)
        } else {
            store.add_certificates(&bytes)
        };
        added.map_err(|e| fail(format!("{file}: {e}")))?;
    }
    if store.counts().0 == 0 {
        return Err(fail("root.pem: no self-signed root certificate".into()));
    }
    Ok(store)
}

/// Runs fsed until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<(), StartError> {
    cfg.validate()?;
    std::fs::create_dir_all(&cfg.state_dir)
        .map_err(io(format!("state directory {}", cfg.state_dir.display())))?;
    let store = Store::open(&cfg.state_path(&cfg.database))?;

    let backend = match cfg.cards.backend {
        CardBackend::Pcsc => Backend::Pcsc,
        CardBackend::Virtual => Backend::Virtual(VirtualReaderConfig {
            slots: cfg.cards.virtual_slots.clone(),
        }),
    };
    let trust = match &cfg.trust_dir {
        Some(dir) => {
            let store = load_trust(dir)?;
            let (roots, cas, crls) = store.counts();
            tracing::info!(dir = %dir.display(), roots, cas, crls, "trust store loaded");
            Some(Arc::new(store))
        }
        None => {
            tracing::warn!("no trust directory configured: card certificates and revocation lists are not checked");
            None
        }
    };
    let (cards, card_thread) = Cards::start(backend, trust)?;

    let transport = Arc::new(match cfg.transport.kind {
        TransportKind::Spool => Transport::Spool(
            Spool::open(
                cfg.state_path(&cfg.transport.spool_outbox),
                cfg.state_path(&cfg.transport.spool_inbox),
            )
            .map_err(io("spool directories"))?,
        ),
        TransportKind::Amqp => {
            let amqp = AmqpConfig {
                url: cfg.transport.amqp_url.clone(),
                return_queue: cfg.transport.return_queue.clone(),
                publish_timeout: std::time::Duration::from_secs(cfg.transport.publish_timeout_secs),
            };
            let transport = AmqpTransport::connect(&amqp)
                .await
                .map_err(|e| StartError::Broker(e.to_string()))?;
            Transport::Amqp(Box::new(transport))
        }
    });

    if let Some(dir) = cfg.socket.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("socket directory {}", dir.display())))?;
    }
    let _ = std::fs::remove_file(&cfg.socket);
    let listener =
        UnixListener::bind(&cfg.socket).map_err(io(format!("socket {}", cfg.socket.display())))?;

    let (trigger, shutdown) = shutdown::channel();
    let events = crate::events::Bus::default();
    let wake = Arc::new(Notify::new());
    let close_now = Arc::new(AtomicBool::new(false));
    let batcher = Batcher {
        store: store.clone(),
        cards: cards.clone(),
        transport: Arc::clone(&transport),
        max_sheets: cfg.lots.max_sheets,
        max_age: cfg.lot_max_age(),
        wake: Arc::clone(&wake),
        close_now: Arc::clone(&close_now),
        events: events.clone(),
        deadline_alarm_days: cfg.lots.deadline_alarm_days,
        alarmed: Default::default(),
        close_at: cfg.lots.close_time(),
        closed_on: Default::default(),
        unroutable: Default::default(),
        window: cfg.transport.window,
        backoff: std::sync::Mutex::new((std::time::Duration::ZERO, None)),
    };
    let mut tasks = tokio::task::JoinSet::new();
    let card_events = tokio::spawn(crate::events::forward_cards(
        cards.subscribe(),
        events.clone(),
    ));
    let card_wake = {
        // A CPS coming back may unblock lots waiting for their signature.
        let (mut rx, wake) = (cards.subscribe(), Arc::clone(&wake));
        tokio::spawn(async move {
            while !matches!(
                rx.recv().await,
                Err(tokio::sync::broadcast::error::RecvError::Closed)
            ) {
                wake.notify_one();
            }
        })
    };
    tasks.spawn(batcher.run(shutdown.clone()));
    match transport.as_ref() {
        Transport::Spool(s) => {
            tasks.spawn(crate::returns::run_spool(
                store.clone(),
                s.clone(),
                events.clone(),
                shutdown.clone(),
            ));
        }
        Transport::Amqp(_) => {
            tasks.spawn(crate::returns::run_amqp(
                store.clone(),
                Arc::clone(&transport),
                events.clone(),
                shutdown.clone(),
            ));
        }
    }
    let ctx = crate::api::Context {
        cards: cards.clone(),
        store,
        batcher_wake: wake,
        close_now,
        events,
        deadline_alarm_days: cfg.lots.deadline_alarm_days,
    };
    tasks.spawn(crate::retention::run(
        ctx.store.clone(),
        cfg.state_path(&cfg.retention.archive_dir),
        cfg.retention.days,
        shutdown.clone(),
    ));
    let api = crate::api::Settings::from_config(&cfg.api);
    tasks.spawn(crate::api::serve_with(listener, ctx, api, shutdown.clone()));
    tracing::info!(socket = %cfg.socket.display(), "fsed ready");
    println!("fsed ready on {}", cfg.socket.display());

    wait_for_signal().await;
    tracing::info!("stopping");
    trigger.fire();
    while tasks.join_next().await.is_some() {}
    cards.stop();
    card_events.abort();
    card_wake.abort();
    let _ = tokio::task::spawn_blocking(move || card_thread.join()).await;
    let _ = std::fs::remove_file(&cfg.socket);
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
