//! Wiring and the service's life: opens the queue, starts the card thread,
//! the transport, the batcher, the returns reader and the socket API (on the
//! socket systemd passed, or one it binds), tells systemd it is ready, then
//! runs the main loop: watchdog keep-alives while the store's committer
//! answers, the status line, SIGHUP reloads. On SIGTERM or SIGINT it stops
//! taking connections and requests, lets those in flight finish (card
//! operations, commits, a lot being signed or sent), closes the broker link
//! and removes the socket it bound.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use fse_formats::pki::TrustStore;

use crate::batcher::Batcher;
use crate::cards::{Backend, Cards, ServiceState, VirtualReaderConfig};
use crate::config::{CardBackend, Config, Live, Sources, TransportKind};
use crate::shutdown;
use crate::store::Store;
use crate::systemd::Notifier;
use crate::transport::amqp::{AmqpConfig, AmqpTransport};
use crate::transport::spool::Spool;
use crate::transport::Transport;

mod tasks;
use tasks::{spawn_card_wake, spawn_network, spawn_upkeep_and_api, Returns};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigErrors),
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
    /// The database is behind its high-water mark: committed data is missing.
    #[error(transparent)]
    Lost(#[from] crate::mark::DataLost),
    /// The high-water mark cannot be read, or another fsed uses the state directory.
    #[error("{0}")]
    State(String),
    /// The network API: its directory, CA, certificate or listener.
    #[error("network API: {0}")]
    Network(#[from] crate::net::NetError),
}

impl StartError {
    /// The exit code of a start refused: 3 when committed data is missing (nothing to retry
    /// until a person restores or accepts), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Lost(_) => 3,
            _ => 1,
        }
    }
}

/// Opens the store of `cfg` once its files are known sound: the state directory made (mode
/// 0750), the lock of its database taken (held by the returned file for the process's life:
/// `fsed restore` and `fsed accept-loss` need fsed stopped), the database compared with its
/// high-water mark (refused when behind it).
pub fn open_store(cfg: &Config) -> Result<(Store, std::fs::File), StartError> {
    crate::mark::create_private_dir(&cfg.state_dir)
        .map_err(io(format!("state directory {}", cfg.state_dir.display())))?;
    let db = cfg.state_path(&cfg.database);
    let lock = crate::mark::lock_database(&db).map_err(StartError::State)?;
    match crate::mark::check(&db) {
        Ok(_) => {}
        Err(crate::mark::CheckError::Lost(lost)) => return Err(StartError::Lost(lost)),
        Err(crate::mark::CheckError::Queue(e)) => return Err(StartError::Store(e)),
        Err(crate::mark::CheckError::Mark(e)) => {
            return Err(StartError::State(format!(
                "{e}; with fsed stopped, restore the latest backup (`fsed restore FILE`) or rewrite the mark from the database (`fsed accept-loss`)"
            )))
        }
    }
    Ok((Store::open(&db)?, lock))
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

/// Applies a new log level (or directives) to the running logger.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What the service needs besides its configuration.
pub struct Options {
    /// Where the configuration came from: read again on SIGHUP.
    pub sources: Sources,
    /// Applies a new `log_level` to the running logger.
    pub set_log_level: SetLogLevel,
    /// The listening socket systemd passed (socket activation), if any: see
    /// [`crate::systemd::activated_listener`].
    pub activated: Option<std::os::unix::net::UnixListener>,
}

/// How long the tasks may take to finish what they are doing once asked to stop. With the
/// broker's goodbye (2 × 2 s at most), the card thread ([`CARD_THREAD_WAIT`]) and the
/// runtime's own stop (2 s), a stop stays under the unit's `TimeoutStopSec=30s`.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// How long the card thread may take to stop once the tasks are done.
pub const CARD_THREAD_WAIT: Duration = Duration::from_secs(2);

/// How often the status line and, without a watchdog, the store's health are looked at.
pub const STATUS_EVERY: Duration = Duration::from_secs(30);

/// Runs fsed until SIGTERM or SIGINT.
pub async fn run(cfg: Config, mut options: Options) -> Result<(), StartError> {
    cfg.validate()?;
    // Installed first: a SIGHUP or SIGTERM during start-up must not kill the process outright.
    let mut signals = Signals::new().map_err(io("signal handlers"))?;
    let notifier = Notifier::from_env();
    notifier.status("starting");
    let (store, _lock) = open_store(&cfg)?;
    let backend = card_backend(&cfg);
    let trust = configured_trust(&cfg)?;
    // The same store authenticates the insurers' returns (their CA is one of its CAs).
    let (cards, card_thread) = Cards::start(backend, trust.clone(), cfg.cards.limits())?;
    let transport = Arc::new(open_transport(&cfg).await?);
    let (listener, bound) = listen(&cfg, options.activated.take())?;
    let network = Arc::new(crate::net::Network::new(&cfg)?);
    // Bound now, the CA and the server certificate made now: a problem stops the start.
    let network_listener = crate::net::server::bind(&network)?;
    if network_listener.is_some() {
        crate::net::server::api_config(&network)?;
    }
    let opened = Opened {
        store,
        cards,
        card_thread,
        transport,
        trust,
        bound,
        network,
        network_listener,
    };
    let service = Service::spawn(&cfg, opened, listener);
    let status = service.announce_ready(&notifier).await;
    let signal = service
        .wait_for_stop(cfg, &options, &mut signals, &notifier, status)
        .await;
    service.stop(signal, &notifier).await;
    Ok(())
}

/// The card backend `cfg` chooses.
fn card_backend(cfg: &Config) -> Backend {
    match cfg.cards.backend {
        CardBackend::Pcsc => Backend::Pcsc,
        CardBackend::Virtual => Backend::Virtual(VirtualReaderConfig {
            slots: cfg.cards.virtual_slots.clone(),
        }),
    }
}

/// The trust store of the configured trust directory, or none (with a warning) without one.
fn configured_trust(cfg: &Config) -> Result<Option<Arc<TrustStore>>, StartError> {
    Ok(match &cfg.trust_dir {
        Some(dir) => {
            let store = load_trust(dir)?;
            let (roots, cas, crls) = store.counts();
            tracing::info!(dir = %dir.display(), roots, cas, crls, "trust store loaded");
            Some(Arc::new(store))
        }
        None => {
            tracing::warn!("no trust directory configured: card certificates and revocation lists are not checked, and every insurer return is refused (it cannot be authenticated)");
            None
        }
    })
}

/// The configured transport: the spool's directories opened, or the broker's link (connected
/// now if the broker answers).
async fn open_transport(cfg: &Config) -> Result<Transport, StartError> {
    Ok(match cfg.transport.kind {
        TransportKind::Spool => Transport::Spool(
            Spool::open(
                cfg.state_path(&cfg.transport.spool_outbox),
                cfg.state_path(&cfg.transport.spool_inbox),
            )
            .map_err(io("spool directories"))?
            .with_max_return_bytes(cfg.transport.spool_max_return_bytes),
        ),
        TransportKind::Amqp => {
            let mut urls = cfg.transport.broker_urls().into_iter();
            let amqp = AmqpConfig {
                url: urls.next().unwrap_or_default(),
                fallback_urls: urls.collect(),
                return_queue: cfg.transport.return_queue.clone(),
                publish_timeout: std::time::Duration::from_secs(cfg.transport.publish_timeout_secs),
            };
            // A broker out of reach at start (the network not up yet, the broker restarting)
            // does not keep fsed from making sheets: they queue, and the batcher and the return
            // consumer connect when it answers.
            let transport = match AmqpTransport::connect(&amqp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "broker out of reach at start: sheets queue until it answers");
                    AmqpTransport::new(&amqp)
                }
            };
            Transport::Amqp(Box::new(transport))
        }
    })
}

/// What start-up opened before any task runs.
struct Opened {
    store: Store,
    cards: Cards,
    card_thread: std::thread::JoinHandle<()>,
    transport: Arc<Transport>,
    trust: Option<Arc<TrustStore>>,
    /// The socket path this process bound; none when systemd passed the socket.
    bound: Option<PathBuf>,
    /// The network API's state.
    network: Arc<crate::net::Network>,
    /// Its listener, when `network.listen` is set.
    network_listener: Option<tokio::net::TcpListener>,
}

/// The running service: what start-up wired together, held by the main loop and taken down,
/// step by step, by [`Service::stop`].
struct Service {
    store: Store,
    cards: Cards,
    card_thread: std::thread::JoinHandle<()>,
    transport: Arc<Transport>,
    /// The socket path this process bound; none when systemd passed the socket.
    bound: Option<PathBuf>,
    live: Live,
    /// Wakes the batcher.
    wake: Arc<Notify>,
    trigger: shutdown::Trigger,
    /// The tasks the stop lets finish: batcher, returns reader, retention, API.
    tasks: JoinSet<()>,
    summaries: JoinHandle<()>,
    card_events: JoinHandle<()>,
    card_wake: JoinHandle<()>,
}

impl Service {
    /// Starts the tasks on what start-up opened, in this order: the warnings' summaries, the
    /// card events' forwarding and wake-ups, the batcher, the returns reader, retention, and
    /// the socket API on `listener`.
    fn spawn(cfg: &Config, opened: Opened, listener: UnixListener) -> Service {
        let Opened {
            store,
            cards,
            card_thread,
            transport,
            trust,
            bound,
            network,
            network_listener,
        } = opened;
        let (trigger, shutdown) = shutdown::channel();
        let events = crate::events::Bus::default();
        let wake = Arc::new(Notify::new());
        let close_now = Arc::new(AtomicBool::new(false));
        let send_now = Arc::new(AtomicBool::new(false));
        let live = Live::new(cfg.live());
        let remote = crate::remote::RemoteCards::start(
            &cfg.remote,
            remote_connector(cfg),
            trust.clone(),
            events.clone(),
            Arc::clone(&wake),
            shutdown.clone(),
        );
        let batcher = Batcher {
            store: store.clone(),
            cards: cards.clone(),
            remote: remote.clone(),
            remote_entries: Default::default(),
            transport: Arc::clone(&transport),
            live: live.clone(),
            wake: Arc::clone(&wake),
            close_now: Arc::clone(&close_now),
            send_now: Arc::clone(&send_now),
            events: events.clone(),
            alarmed: Default::default(),
            closed_on: Default::default(),
            unroutable: Default::default(),
            backoff: std::sync::Mutex::new((std::time::Duration::ZERO, None)),
            caller: crate::caller::Caller::internal("batcher"),
            attachments: cfg.attachments.clone(),
            paper_alarmed: Default::default(),
        };
        let mut tasks = JoinSet::new();
        let summaries = tokio::spawn(crate::logging::run_summaries(
            crate::logging::global(),
            shutdown.clone(),
        ));
        let card_events = tokio::spawn(crate::events::forward_cards(
            cards.subscribe(),
            events.clone(),
        ));
        let card_wake = spawn_card_wake(&cards, &wake);
        tasks.spawn(batcher.run(shutdown.clone()));
        let returns = Returns {
            store: &store,
            transport: &transport,
            trust: &trust,
            events: &events,
            shutdown: &shutdown,
        };
        returns.spawn(&mut tasks);
        let ctx = crate::api::Context {
            cards: cards.clone(),
            store: store.clone(),
            batcher_wake: Arc::clone(&wake),
            close_now,
            send_now,
            events,
            live: live.clone(),
            doctor: Arc::new(doctor_setup(cfg, &transport, trust.is_some())),
            network: Arc::clone(&network),
            remote,
            sign_cache: Default::default(),
            paper: Arc::new(crate::paper::Paper::new(&cfg.paper, cfg.paper_dir())),
            presence: Arc::new(crate::presence::AppTokens::new(trust.clone(), &cfg.app)),
            rights: Arc::new(crate::rights::Rights::from_config(cfg, &store, &trust)),
        };
        spawn_network(&mut tasks, cfg, &network, network_listener, &ctx, &shutdown);
        spawn_upkeep_and_api(&mut tasks, cfg, ctx, listener, &shutdown);
        Service {
            store,
            cards,
            card_thread,
            transport,
            bound,
            live,
            wake,
            trigger,
            tasks,
            summaries,
            card_events,
            card_wake,
        }
    }

    /// Says the service is ready: in the log, to systemd (with the status line, returned) and
    /// on standard output.
    async fn announce_ready(&self, notifier: &Notifier) -> String {
        let socket_shown = self.bound.as_ref().map_or_else(
            || "the socket passed by systemd".to_string(),
            |p| p.display().to_string(),
        );
        let status = ready_status(&self.store, &self.cards).await;
        tracing::info!(socket = %socket_shown, activated = self.bound.is_none(), status = %status, "fsed ready");
        notifier.ready(&status);
        println!("fsed ready on {socket_shown}");
        status
    }

    /// The main loop, until SIGTERM or SIGINT (whose name it returns): the status line kept
    /// current, the watchdog's keep-alives while the store's committer answers, SIGHUP reloads
    /// of `cfg`.
    async fn wait_for_stop(
        &self,
        cfg: Config,
        options: &Options,
        signals: &mut Signals,
        notifier: &Notifier,
        status: String,
    ) -> &'static str {
        let watchdog = crate::systemd::watchdog_timeout();
        if let Some(timeout) = watchdog {
            tracing::info!(timeout = ?timeout, "watchdog enabled");
        }
        let mut running = cfg;
        let reload = Reload {
            options,
            live: &self.live,
            wake: &self.wake,
            notifier,
            store: &self.store,
            cards: &self.cards,
        };
        // The keep-alive goes at half the watchdog's timeout, and only after the committer answered.
        let every = watchdog.map_or(STATUS_EVERY, |t| (t / 2).max(Duration::from_millis(100)));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut status = StatusLine {
            last: status,
            at: tokio::time::Instant::now(),
        };
        // A reader lost or found (pcscd gone, back) shows in the status at once.
        let mut card_changes = self.cards.subscribe();
        loop {
            tokio::select! {
                Ok(crate::cards::CardEvent::ReaderFound { .. } | crate::cards::CardEvent::ReaderLost { .. }) = card_changes.recv() => {
                    status.refresh(notifier, &self.store, &self.cards).await;
                }
                _ = signals.term.recv() => break "SIGTERM",
                _ = signals.int.recv() => break "SIGINT",
                _ = signals.hup.recv() => reload.apply(&mut running).await,
                _ = tick.tick() => {
                    self.health_check(every, watchdog.is_some(), notifier).await;
                    if status.at.elapsed() >= STATUS_EVERY {
                        status.at = tokio::time::Instant::now();
                        status.refresh(notifier, &self.store, &self.cards).await;
                    }
                }
            }
        }
    }

    /// Asks the store's committer to answer within `every`; when it does and systemd watches
    /// (`watchdog`), sends the keep-alive.
    async fn health_check(&self, every: Duration, watchdog: bool, notifier: &Notifier) {
        let check = tokio::time::timeout(every, self.store.ping()).await;
        match check {
            Ok(Ok(())) => {
                if watchdog {
                    notifier.watchdog();
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "health check: the store's committer is gone; no watchdog keep-alive")
            }
            Err(_) => {
                tracing::error!(waited = ?every, "health check: the store's committer did not answer; no watchdog keep-alive")
            }
        }
    }

    /// Stops on `signal`: the tasks asked to stop and let finish, the broker link closed, the
    /// database checkpointed, the card thread stopped, the socket this process bound removed,
    /// the warnings held back logged.
    async fn stop(mut self, signal: &'static str, notifier: &Notifier) {
        tracing::info!(
            signal,
            "stopping: no new connections or requests; finishing those in flight"
        );
        notifier.stopping("stopping: finishing requests in flight");
        self.trigger.fire();
        self.drain_tasks().await;
        if let Transport::Amqp(amqp) = self.transport.as_ref() {
            amqp.close().await;
        }
        // Nothing writes any more: the WAL into the database file, so that the file alone holds
        // every commit (a WAL lost after a clean stop loses nothing).
        match self.store.close().await {
            Ok(()) => tracing::info!("database checkpointed: the WAL is empty"),
            Err(e) => {
                tracing::error!(error = %e, "the WAL could not be emptied into the database file; keep the -wal file with it")
            }
        }
        self.cards.stop();
        self.card_events.abort();
        self.card_wake.abort();
        // A card thread stuck in a reader call must not hold the stop past the unit's timeout.
        let card_thread = self.card_thread;
        let joined = tokio::time::timeout(
            CARD_THREAD_WAIT,
            tokio::task::spawn_blocking(move || card_thread.join()),
        )
        .await;
        if joined.is_err() {
            tracing::warn!(waited = ?CARD_THREAD_WAIT, "the card thread did not stop; leaving it");
        }
        // The socket file goes only if this process made it: systemd owns an activated one.
        if let Some(path) = &self.bound {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(socket = %path.display(), error = %e, "cannot remove the socket");
            }
        }
        // What the limit on repeated warnings held back until now, once everything has stopped.
        self.summaries.abort();
        crate::logging::emit_summaries(&crate::logging::global(), true);
        tracing::info!("stopped");
    }

    /// Waits up to [`STOP_GRACE`] for the tasks to finish; aborts those still busy after it.
    async fn drain_tasks(&mut self) {
        let tasks = &mut self.tasks;
        let drained = tokio::time::timeout(STOP_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = tasks.len(),
                grace = ?STOP_GRACE,
                "tasks still busy after the grace period; stopping them"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
}

/// What `fse.doctor` checks against: the configured card backend, state directory, transport
/// and whether a trust directory is set.
fn doctor_setup(
    cfg: &Config,
    transport: &Arc<Transport>,
    trust_configured: bool,
) -> crate::doctor::Setup {
    crate::doctor::Setup {
        backend: cfg.cards.backend,
        virtual_slots: cfg
            .cards
            .virtual_slots
            .iter()
            .map(ToString::to_string)
            .collect(),
        state_dir: cfg.state_dir.clone(),
        transport: Arc::clone(transport),
        trust_configured,
        attachments: cfg.attachments.clone(),
    }
}

/// The status line last sent to systemd, and when the main loop last looked at it.
struct StatusLine {
    last: String,
    at: tokio::time::Instant,
}

impl StatusLine {
    /// Sends the status line again when it changed.
    async fn refresh(&mut self, notifier: &Notifier, store: &Store, cards: &Cards) {
        let status = ready_status(store, cards).await;
        if status != self.last {
            notifier.status(&status);
            self.last = status;
        }
    }
}

/// The API listener: the one systemd passed, or the configured path bound now (a stale socket
/// file left by a crash is replaced). The path is returned when this process bound it.
fn listen(
    cfg: &Config,
    activated: Option<std::os::unix::net::UnixListener>,
) -> Result<(UnixListener, Option<PathBuf>), StartError> {
    if let Some(std) = activated {
        let listener = UnixListener::from_std(std).map_err(io("socket passed by systemd"))?;
        return Ok((listener, None));
    }
    if let Some(dir) = cfg.socket.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("socket directory {}", dir.display())))?;
    }
    let _ = std::fs::remove_file(&cfg.socket);
    let listener =
        UnixListener::bind(&cfg.socket).map_err(io(format!("socket {}", cfg.socket.display())))?;
    Ok((listener, Some(cfg.socket.clone())))
}

/// The status line while running: how many sheets wait to be sent.
async fn ready_status(store: &Store, cards: &Cards) -> String {
    let queued = match store.read(|q| q.backlog()).await {
        Ok(backlog) => format!("ready: {} sheets queued", backlog.unsent),
        Err(e) => {
            tracing::warn!(error = %e, "cannot count the sheets queued");
            "ready".into()
        }
    };
    match cards.service().state {
        ServiceState::Waiting => format!("{queued}; waiting for pcscd"),
        ServiceState::Lost => format!("{queued}; pcscd lost, reconnecting"),
        ServiceState::Connected | ServiceState::Embedded => queued,
    }
}

/// SIGHUP: the configuration read again and its live keys applied.
struct Reload<'a> {
    options: &'a Options,
    live: &'a Live,
    wake: &'a Notify,
    notifier: &'a Notifier,
    store: &'a Store,
    cards: &'a Cards,
}

impl Reload<'_> {
    /// Reads the sources again; applies what can change live, logs what needs a restart. A bad
    /// configuration is logged, problem by problem, and the running one stays.
    async fn apply(&self, running: &mut Config) {
        self.notifier.reloading("reloading the configuration");
        match self.options.sources.load() {
            Err(errors) => {
                for problem in &errors.0 {
                    tracing::error!(key = problem.key().unwrap_or("-"), problem = %problem, "configuration not reloaded; the running one stays");
                }
            }
            Ok(new) => {
                let changes = running.changes(&new);
                if changes.is_empty() {
                    tracing::info!("configuration reloaded: nothing changed");
                }
                let mut applied = running.with_live_from(&new);
                if applied.log_level != running.log_level {
                    if let Err(e) = (self.options.set_log_level)(&applied.log_level) {
                        tracing::error!(key = "log_level", error = %e, "log level not applied");
                        applied.log_level = running.log_level.clone();
                    }
                }
                self.live.set(applied.live());
                for c in &changes {
                    if c.live {
                        tracing::info!(key = c.key, change = %c, "configuration applied");
                    } else {
                        tracing::warn!(key = c.key, change = %c, "configuration change needs a restart");
                    }
                }
                *running = applied;
                // Lots may close at once under the new size or age.
                self.wake.notify_one();
            }
        }
        self.notifier
            .ready(&ready_status(self.store, self.cards).await);
    }
}

/// The signals fsed handles: SIGTERM and SIGINT stop it, SIGHUP reloads.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// How the links to other fseds connect: `unix:/path` addresses directly; `host:port`
/// addresses with mutual TLS under the enrolled identity (`remote.identity_dir`).
fn remote_connector(cfg: &Config) -> Arc<dyn crate::remote::connector::Connector> {
    if cfg
        .remote
        .fsed
        .iter()
        .all(|f| f.address.starts_with("unix:"))
    {
        return Arc::new(crate::remote::connector::Plain);
    }
    Arc::new(crate::remote::connector::Tls::load(
        &cfg.remote.identity_dir(&cfg.state_dir),
    ))
}
