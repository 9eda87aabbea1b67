//! The service's long-running tasks besides the batcher: the network API, retention, the
//! paper duplicates' look and the socket API, the returns reader, and the batcher's wake-ups on
//! card events.

use super::*;

/// The network API's tasks: its listener (when `[network] listen` is set) serving `ctx` to the
/// enrolled workstations, and the stop of its enrollment listener at shutdown.
pub(super) fn spawn_network(
    tasks: &mut JoinSet<()>,
    cfg: &Config,
    network: &Arc<crate::net::Network>,
    network_listener: Option<tokio::net::TcpListener>,
    ctx: &crate::api::Context,
    shutdown: &shutdown::Shutdown,
) {
    if let Some(listener) = network_listener {
        tasks.spawn(crate::net::server::serve(
            Arc::clone(network),
            listener,
            ctx.clone(),
            crate::net::Network::limits(cfg),
            shutdown.clone(),
        ));
    }
    {
        let (network, mut stop) = (Arc::clone(network), shutdown.clone());
        tasks.spawn(async move {
            stop.wait().await;
            network.stop();
        });
    }
}

/// Spawns retention, the paper duplicates' look and, last, the socket API on `listener`.
pub(super) fn spawn_upkeep_and_api(
    tasks: &mut JoinSet<()>,
    cfg: &Config,
    ctx: crate::api::Context,
    listener: UnixListener,
    shutdown: &shutdown::Shutdown,
) {
    tasks.spawn(crate::retention::run(
        ctx.store.clone(),
        cfg.state_path(&cfg.retention.archive_dir),
        cfg.retention.days,
        shutdown.clone(),
    ));
    tasks.spawn(crate::paper::task(&ctx, shutdown.clone()));
    let api = crate::api::Settings::from_config(&cfg.api);
    tasks.spawn(crate::api::serve_with(listener, ctx, api, shutdown.clone()));
}

/// Wakes the batcher on every card event: a CPS coming back may unblock lots waiting for their
/// signature.
pub(super) fn spawn_card_wake(cards: &Cards, wake: &Arc<Notify>) -> JoinHandle<()> {
    let (mut rx, wake) = (cards.subscribe(), Arc::clone(wake));
    tokio::spawn(async move {
        while !matches!(
            rx.recv().await,
            Err(tokio::sync::broadcast::error::RecvError::Closed)
        ) {
            wake.notify_one();
        }
    })
}

/// What the returns reader is started with.
pub(super) struct Returns<'a> {
    /// The queue.
    pub(super) store: &'a Store,
    /// The transport whose returns are read.
    pub(super) transport: &'a Arc<Transport>,
    /// The insurers' trust store.
    pub(super) trust: &'a Option<Arc<TrustStore>>,
    /// Where returns are announced.
    pub(super) events: &'a crate::events::Bus,
    /// Ends the reader.
    pub(super) shutdown: &'a shutdown::Shutdown,
}

impl Returns<'_> {
    /// Starts the returns reader of the transport: the spool's inbox or the broker's queue.
    pub(super) fn spawn(self, tasks: &mut JoinSet<()>) {
        match self.transport.as_ref() {
            Transport::Spool(s) => {
                tasks.spawn(crate::returns::run_spool(
                    self.store.clone(),
                    s.clone(),
                    self.trust.clone(),
                    self.events.clone(),
                    self.shutdown.clone(),
                ));
            }
            Transport::Amqp(_) => {
                tasks.spawn(crate::returns::run_amqp(
                    self.store.clone(),
                    Arc::clone(self.transport),
                    self.trust.clone(),
                    self.events.clone(),
                    self.shutdown.clone(),
                ));
            }
        }
    }
}
