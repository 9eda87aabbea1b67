//! The card layer: one thread owns every reader (PC/SC context or the
//! embedded virtual reader) and runs card operations one at a time. Async code
//! reaches it through [`Cards`], which sends a closure to the thread and awaits
//! its answer: [`Cards::run_for`] hands one card's jobs over in turns per client
//! (`share`), [`Cards::run`] in the order they come.
//!
//! The thread finds by itself which slot holds which card (CPS, Vitale,
//! unknown): no reader configuration. It blocks on `SCardGetStatusChange`
//! (or on its request channel for the virtual reader): no polling.

mod pcsc_reader;
mod session;
mod share;
mod slot;
mod virtual_reader;

use std::sync::mpsc;

use fse_formats::cards::{CardKind, CpsData, VitaleData};
use fse_formats::channel::{CardChannel, CardError};
use fse_formats::pki::{CertCheck, CertStatus, TrustStore};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::{broadcast, oneshot};

pub use session::{Limits, SessionInfo};
pub use share::{Busy, CardKey, Lease};
pub use slot::{refusal_to_sign, Slot};

use crate::caller::{Caller, ClientId};
pub use virtual_reader::VirtualReaderConfig;

/// What `cards.list` shows of one card.
#[derive(Debug, Clone, Serialize)]
pub struct CardInfo {
    /// Reader name.
    pub reader: String,
    /// ATR, hex.
    pub atr: String,
    /// Kind.
    pub kind: CardKind,
    /// Card serial.
    pub serial: Option<String>,
    /// PIN verified (CPS).
    pub pin_verified: bool,
    /// The CPS's signing session (`null` without a verified PIN); absent for other cards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<Option<SessionInfo>>,
    /// Who holds the card (`cards.lock`), while someone does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<String>,
    /// When that lease ends (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_expires_at: Option<String>,
    /// Why the card could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The check of the card's certificate against the trust store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertCheck>,
    /// CPS contents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cps: Option<CpsData>,
    /// Vitale contents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vitale: Option<VitaleData>,
}

/// A card event, broadcast to subscribers.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CardEvent {
    /// A card was inserted and read.
    Inserted {
        /// The card.
        card: Box<CardInfo>,
    },
    /// A card left its reader.
    Removed {
        /// Reader name.
        reader: String,
    },
    /// A reader appeared (plugged in, or seen again once pcscd answers).
    ReaderFound {
        /// Reader name.
        reader: String,
    },
    /// A reader went away: unplugged, or fsed lost its link to pcscd (which it re-establishes).
    ReaderLost {
        /// Reader name.
        reader: String,
        /// Why: `unplugged`, or the PC/SC error that ended the context.
        reason: String,
    },
    /// A CPS's signing session ended: its PIN must be verified again.
    SessionEnded {
        /// The CPS's serial.
        serial: String,
        /// `lots`, `hours`, `locked`, `removed` or `pin` (see [`session`]).
        reason: &'static str,
    },
}

/// fsed's own link to the reader service (PC/SC backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// The embedded virtual reader: no service to reach.
    Embedded,
    /// pcscd has not answered yet since fsed started: fsed tries again every second.
    Waiting,
    /// A PC/SC context is established.
    Connected,
    /// The context died (pcscd stopped or restarted): fsed re-establishes it every second.
    Lost,
}

/// What the card thread last knew of its link to pcscd, for the doctor and the service status.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// The link's state.
    pub state: ServiceState,
    /// Since when (RFC 3339).
    pub since: String,
    /// The last PC/SC error, when not connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The readers seen on the current context.
    pub readers: Vec<String>,
}

/// The card thread's side of [`ServiceStatus`], shared with [`Cards`].
#[derive(Clone)]
pub(crate) struct ServiceView(Arc<std::sync::Mutex<ServiceStatus>>);

impl ServiceView {
    fn new(state: ServiceState) -> ServiceView {
        ServiceView(Arc::new(std::sync::Mutex::new(ServiceStatus {
            state,
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            error: None,
            readers: Vec::new(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ServiceStatus> {
        // A poisoned lock only means a panic while writing plain values: they are whole.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new state (its time changes only when the state does).
    pub(crate) fn set(&self, state: ServiceState, error: Option<String>, readers: Vec<String>) {
        let mut s = self.lock();
        if s.state != state {
            s.since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        }
        s.state = state;
        s.error = error;
        s.readers = readers;
    }

    /// The readers seen now.
    pub(crate) fn set_readers(&self, readers: Vec<String>) {
        self.lock().readers = readers;
    }

    /// The readers seen until now, forgotten.
    pub(crate) fn take_readers(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().readers)
    }

    fn get(&self) -> ServiceStatus {
        self.lock().clone()
    }
}

/// What a card holds and its session state, as of the last change the card thread saw: read
/// without a trip to the card thread.
#[derive(Clone)]
pub struct SlotView {
    /// CPS contents, when a CPS.
    pub cps: Option<CpsData>,
    /// Vitale contents, when a Vitale card.
    pub vitale: Option<VitaleData>,
    /// Whether the CPS PIN was verified in this card session.
    pub pin_verified: bool,
    /// What the trust store says of the card's certificate.
    pub certificate: Option<CertCheck>,
}

/// The cards present (and not found removed), published by the card thread after every change:
/// a card inserted or removed, and every job (before the job's caller gets its answer, so a
/// caller sees what its own job did).
#[derive(Clone, Default)]
pub struct Snapshot {
    /// One view per present card, in the registry's order.
    pub slots: Vec<SlotView>,
}

impl Snapshot {
    /// The CPS with this serial, or the only/first CPS when `serial` is None
    /// ([`Registry::cps`]'s choice).
    pub fn cps(&self, serial: Option<&str>) -> Result<&SlotView, CardError> {
        self.slots
            .iter()
            .find(|s| {
                s.cps
                    .as_ref()
                    .is_some_and(|c| serial.is_none_or(|want| c.holder.serial == want))
            })
            .ok_or(CardError::WrongCard)
    }

    /// The first Vitale card present ([`Registry::vitale`]'s choice).
    pub fn vitale(&self) -> Result<&SlotView, CardError> {
        self.slots
            .iter()
            .find(|s| s.vitale.is_some())
            .ok_or(CardError::WrongCard)
    }
}

type Published = Arc<std::sync::RwLock<Arc<Snapshot>>>;

/// The cards currently present, owned by the card thread.
#[derive(Default)]
pub struct Registry {
    /// Present cards, one per reader.
    pub slots: Vec<Slot>,
    /// Trusted CAs and revocation lists; `None`: card certificates are not checked.
    pub trust: Option<Arc<TrustStore>>,
    /// Where [`Registry::publish`] puts the snapshot.
    published: Published,
    /// Signing sessions' bounds.
    pub limits: Arc<Limits>,
    /// Where session ends are announced (none in tests of the registry alone).
    events: Option<broadcast::Sender<CardEvent>>,
}

impl Registry {
    /// Publishes the state of the cards for [`Cards::snapshot`].
    pub fn publish(&self) {
        // Most jobs (a proof of presence, a signature) change nothing shown: comparing costs no
        // allocation, copying the cards' contents does.
        {
            let current = self.published.read().unwrap_or_else(|p| p.into_inner());
            let mut shown = self.slots.iter().filter(|s| !s.removed);
            if current.slots.len() == shown.clone().count()
                && current.slots.iter().zip(&mut shown).all(|(v, s)| {
                    v.pin_verified == s.pin_verified
                        && v.cps == s.cps
                        && v.vitale == s.vitale
                        && v.certificate == s.certificate
                })
            {
                return;
            }
        }
        let snapshot = Arc::new(Snapshot {
            slots: self
                .slots
                .iter()
                .filter(|s| !s.removed)
                .map(|s| SlotView {
                    cps: s.cps.clone(),
                    vitale: s.vitale.clone(),
                    pin_verified: s.pin_verified,
                    certificate: s.certificate.clone(),
                })
                .collect(),
        });
        // A poisoned lock only means a reader panicked while cloning an Arc: the value is whole.
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }

    /// Checks the certificate of a freshly read card, then replaces (or adds) the slot of its
    /// reader; returns what `cards.list` shows of it.
    pub fn insert(&mut self, mut slot: Slot) -> CardInfo {
        let now = chrono::Utc::now().timestamp();
        let card = match (&slot.cps, &slot.vitale) {
            (Some(c), _) => Some((c.certificate.as_deref(), &c.public_key)),
            (None, Some(v)) => Some((v.certificate.as_deref(), &v.public_key)),
            (None, None) => None,
        };
        slot.certificate = card.map(|(cert, key)| match (&self.trust, cert) {
            (None, _) => CertCheck::unchecked(),
            (Some(_), None) => CertCheck {
                status: CertStatus::Missing,
                subject: None,
                serial: None,
                not_after: None,
                revocation_checked: false,
                reason: Some("the card holds no certificate".into()),
            },
            (Some(trust), Some(cert)) => trust.check(cert, key, now),
        });
        if let Some(why) = slot.certificate.as_ref().and_then(CertCheck::refusal) {
            tracing::warn!(reader = %slot.reader, reason = %why, "card certificate refused");
        }
        let info = slot.info();
        self.slots.retain(|s| s.reader != slot.reader);
        self.slots.push(slot);
        self.publish();
        info
    }

    /// Forgets the card of a reader; returns whether there was one.
    pub fn remove(&mut self, reader: &str) -> bool {
        let before = self.slots.len();
        for slot in self.slots.iter_mut().filter(|s| s.reader == reader) {
            slot.removed = true;
        }
        self.sessions();
        self.slots.retain(|s| s.reader != reader);
        self.publish();
        before != self.slots.len()
    }

    /// The CPS with this serial, or the only/first CPS when `serial` is None.
    pub fn cps(&mut self, serial: Option<&str>) -> Result<&mut Slot, CardError> {
        self.slots
            .iter_mut()
            .find(|s| {
                !s.removed
                    && s.cps
                        .as_ref()
                        .is_some_and(|c| serial.is_none_or(|want| c.holder.serial == want))
            })
            .ok_or(CardError::WrongCard)
    }

    /// The CPS whose holder has this national id.
    pub fn cps_of(&mut self, national_id: &str) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| {
            !s.removed
                && s.cps
                    .as_ref()
                    .is_some_and(|c| c.holder.national_id == national_id)
        })
    }

    /// The first Vitale card present.
    pub fn vitale(&mut self) -> Result<&mut Slot, CardError> {
        self.slots
            .iter_mut()
            .find(|s| !s.removed && s.vitale.is_some())
            .ok_or(CardError::WrongCard)
    }
}

type Job = Box<dyn FnOnce(&mut Registry) + Send>;

/// Messages to the card thread.
pub(crate) enum Msg {
    /// Run a job on the registry.
    Job(Job),
    /// A card appeared on a virtual reader slot.
    VirtualInserted {
        reader: String,
        atr: Vec<u8>,
        channel: Box<dyn CardChannel + Send>,
    },
    /// Stop the thread.
    Stop,
}

/// Which readers the card thread drives.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Every PC/SC reader of pcscd.
    Pcsc,
    /// fsed's embedded virtual reader (vpcd protocol; simulated cards connect to it).
    Virtual(VirtualReaderConfig),
}

/// Errors starting the card layer.
#[derive(Debug, thiserror::Error)]
pub enum CardsError {
    /// pcscd is not reachable.
    #[error("PC/SC: {0} (is pcscd running?)")]
    Pcsc(String),
    /// The virtual reader could not listen.
    #[error("virtual reader: {0}")]
    Virtual(String),
    /// The card thread has stopped.
    #[error("card thread stopped")]
    Stopped,
    /// The card is taken by other clients for longer than `[cards] max_wait_ms`.
    #[error("{0}")]
    Busy(Busy),
}

/// Async handle to the card thread.
#[derive(Clone)]
pub struct Cards {
    tx: mpsc::Sender<Msg>,
    wake: Waker,
    events: broadcast::Sender<CardEvent>,
    published: Published,
    service: ServiceView,
    shared: Arc<Shared>,
}

/// What the async side and the card thread share to hand one card's jobs over in turns.
struct Shared {
    /// The scheduler.
    state: std::sync::Mutex<share::Share>,
    /// The card thread's queue: the card thread itself sends the next job of a card when one
    /// ends.
    tx: mpsc::Sender<Msg>,
    /// Waits and leases' bounds; signing sessions' bounds.
    limits: Arc<Limits>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, share::Share> {
        // A poisoned lock only means a panic between two plain updates of queues: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Ends a client's leases and drops its waiting card jobs when dropped (its connection closed).
pub struct ClientGuard {
    shared: Arc<Shared>,
    wake: Waker,
    client: ClientId,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        let ready = self
            .shared
            .state()
            .gone(self.client, tokio::time::Instant::now());
        send_ready(&self.shared.tx, &self.wake, ready);
    }
}

/// What [`Cards::schedule`] did with a job.
enum Scheduled<T, F> {
    /// The card is not present: the job runs unscheduled (and finds it absent).
    Unscheduled(F),
    /// Submitted: its answer comes on the receiver; a lease held by another client keeps it
    /// waiting until that instant at least.
    Waiting(oneshot::Receiver<T>, Option<tokio::time::Instant>),
}

/// Hands jobs that may now run to the card thread (from outside it: wakes it).
fn send_ready(tx: &mpsc::Sender<Msg>, wake: &Waker, ready: Vec<Job>) {
    if ready.is_empty() {
        return;
    }
    for job in ready {
        let _ = tx.send(Msg::Job(job));
    }
    wake.wake();
}

#[derive(Clone)]
enum Waker {
    /// The context the card thread blocks on now (none while pcscd is out of reach: the thread
    /// then waits on its queue with a timeout).
    Pcsc(pcsc_reader::CurrentContext),
    None,
}

impl Waker {
    fn wake(&self) {
        if let Waker::Pcsc(current) = self {
            // A poisoned lock only means a panic while swapping an Option: the value is whole.
            let ctx = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(ctx) = ctx {
                // Interrupts the blocking SCardGetStatusChange so the thread reads its queue.
                let _ = ctx.cancel();
            }
        }
    }
}

impl Cards {
    /// Starts the card thread on the chosen backend; card certificates are checked against
    /// `trust` when given.
    pub fn start(
        backend: Backend,
        trust: Option<Arc<TrustStore>>,
        limits: Limits,
    ) -> Result<(Cards, std::thread::JoinHandle<()>), CardsError> {
        let (tx, rx) = mpsc::channel();
        let (events, _) = broadcast::channel(64);
        let published = Published::default();
        let limits = Arc::new(limits);
        let reg = Registry {
            slots: Vec::new(),
            trust,
            published: Arc::clone(&published),
            limits: Arc::clone(&limits),
            events: Some(events.clone()),
        };
        let (wake, service, handle) = match backend {
            Backend::Pcsc => {
                let current = pcsc_reader::CurrentContext::default();
                let service = ServiceView::new(ServiceState::Waiting);
                let handle = pcsc_reader::spawn(
                    rx,
                    events.clone(),
                    reg,
                    Arc::clone(&current),
                    service.clone(),
                )?;
                (Waker::Pcsc(current), service, handle)
            }
            Backend::Virtual(cfg) => {
                let handle = virtual_reader::spawn(cfg, rx, tx.clone(), events.clone(), reg)?;
                (
                    Waker::None,
                    ServiceView::new(ServiceState::Embedded),
                    handle,
                )
            }
        };
        let shared = Arc::new(Shared {
            state: Default::default(),
            tx: tx.clone(),
            limits,
        });
        Ok((
            Cards {
                tx,
                wake,
                events,
                published,
                service,
                shared,
            },
            handle,
        ))
    }

    /// fsed's own link to pcscd as the card thread last saw it (not a fresh look).
    pub fn service(&self) -> ServiceStatus {
        self.service.get()
    }

    /// The cards as the card thread last saw them, without waiting for it: what was true when
    /// the last job ended or the last card came or went.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        // A poisoned lock only means a reader panicked while cloning an Arc: the value is whole.
        Arc::clone(&self.published.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `f` on the card thread and returns its result.
    pub async fn run<T, F>(&self, f: F) -> Result<T, CardsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Registry) -> T + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |reg| {
            reg.sessions();
            let out = f(reg);
            reg.sessions();
            // Before the answer: whoever gets it sees its job's effects in the snapshot.
            reg.publish();
            let _ = reply.send(out);
        });
        self.tx
            .send(Msg::Job(job))
            .map_err(|_| CardsError::Stopped)?;
        self.wake.wake();
        // SCardCancel only interrupts a thread already blocked in SCardGetStatusChange: a wake-up
        // sent just before it blocks is lost. Until the job answers, wake it again now and then
        // (a no-op while the thread is busy with card work; nothing at all while idle).
        let mut rx = rx;
        loop {
            tokio::select! {
                r = &mut rx => return r.map_err(|_| CardsError::Stopped),
                _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => self.wake.wake(),
            }
        }
    }

    /// Subscribes to card events.
    pub fn subscribe(&self) -> broadcast::Receiver<CardEvent> {
        self.events.subscribe()
    }

    /// Asks the card thread to stop.
    pub fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
        self.wake.wake();
    }

    /// The cards present, with their signing sessions and leases.
    pub async fn list(&self) -> Result<Vec<CardInfo>, CardsError> {
        let mut cards: Vec<CardInfo> = self
            .run(|reg| {
                let limits = Arc::clone(&reg.limits);
                reg.slots
                    .iter()
                    .map(|s| {
                        let mut info = s.info();
                        if s.cps.is_some() {
                            info.session = Some(s.session_info(&limits));
                        }
                        info
                    })
                    .collect()
            })
            .await?;
        let now = tokio::time::Instant::now();
        let state = self.shared.state();
        for card in &mut cards {
            let key = match card.kind {
                CardKind::Cps => CardKey::Cps(None),
                CardKind::Vitale => CardKey::Vitale(None),
                _ => continue,
            };
            if let Some(lease) = card
                .serial
                .as_deref()
                .and_then(|serial| state.lease_of(key, serial, now))
            {
                card.locked_by = Some(lease.holder.clone());
                card.lock_expires_at = Some(lease.expires_at.clone());
            }
        }
        Ok(cards)
    }

    /// The bounds of waits, leases and signing sessions.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// The serial of the card `key` names, as the card thread last saw the cards.
    fn resolve<'s>(snapshot: &'s Snapshot, key: CardKey<'_>) -> Option<&'s str> {
        match key {
            CardKey::Cps(serial) => snapshot
                .cps(serial)
                .ok()
                .and_then(|v| v.cps.as_ref())
                .map(|c| c.holder.serial.as_str()),
            CardKey::Vitale(serial) => snapshot
                .slots
                .iter()
                .filter_map(|s| s.vitale.as_ref())
                .find(|v| serial.is_none_or(|want| v.serial == want))
                .map(|v| v.serial.as_str()),
        }
    }

    /// Runs `f` on the card thread for `caller`, in its turn among the clients of `card`
    /// (round-robin per client; only the holder's jobs while a lease is held); refused at once
    /// with [`CardsError::Busy`] when it would wait longer than `[cards] max_wait_ms` behind
    /// another client. A card not present is not scheduled: `f` runs and finds it absent.
    pub async fn run_for<T, F>(
        &self,
        caller: &Caller,
        card: CardKey<'_>,
        f: F,
    ) -> Result<T, CardsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Registry) -> T + Send + 'static,
    {
        let (mut rx, lease_end) = match self.schedule(caller, card, f)? {
            Scheduled::Unscheduled(f) => return self.run(f).await,
            Scheduled::Waiting(rx, lease_end) => (rx, lease_end),
        };
        // As in `run`: wake the PC/SC thread now and then until the answer comes; and when a
        // lease held by another client keeps this job waiting, look again at its end (the
        // lease expires in the scheduler, not by its holder's leave).
        let tick = std::time::Duration::from_millis(50);
        loop {
            let sleep = match lease_end {
                Some(end) => tokio::time::sleep_until(end.min(tokio::time::Instant::now() + tick)),
                None => tokio::time::sleep(tick),
            };
            tokio::select! {
                r = &mut rx => return r.map_err(|_| CardsError::Stopped),
                () = sleep => {
                    if lease_end.is_some_and(|end| end <= tokio::time::Instant::now()) {
                        let ready = self.shared.state().expired(tokio::time::Instant::now());
                        send_ready(&self.tx, &self.wake, ready);
                    }
                    self.wake.wake();
                }
            }
        }
    }

    /// `run_for`'s first step, without an await: the job submitted to the scheduler (and sent
    /// to the card thread when its turn is now), or `f` back when the card is not present.
    fn schedule<T, F>(
        &self,
        caller: &Caller,
        card: CardKey<'_>,
        f: F,
    ) -> Result<Scheduled<T, F>, CardsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Registry) -> T + Send + 'static,
    {
        let snapshot = self.snapshot();
        let Some(serial) = Cards::resolve(&snapshot, card) else {
            return Ok(Scheduled::Unscheduled(f));
        };
        let (reply, rx) = oneshot::channel();
        let mut state = self.shared.state();
        let index = state.card(card, serial);
        drop(snapshot);
        let shared = Arc::clone(&self.shared);
        let job: Job = Box::new(move |reg| {
            let started = std::time::Instant::now();
            // A client gone before its turn (connection closed) has nothing run for it.
            if !reply.is_closed() {
                reg.sessions();
                let out = f(reg);
                reg.sessions();
                reg.publish();
                let _ = reply.send(out);
            }
            // On the card thread: the card's next job goes straight into its queue.
            let next = shared
                .state()
                .done(index, started.elapsed(), tokio::time::Instant::now());
            if let Some(next) = next {
                let _ = shared.tx.send(Msg::Job(next));
            }
        });
        let max_wait = self.shared.limits.max_wait();
        let submitted = state.submit(
            index,
            caller.client,
            job,
            tokio::time::Instant::now(),
            max_wait,
        );
        drop(state);
        let lease_end = match submitted {
            Ok(share::Submitted::RunNow(job)) => {
                self.tx
                    .send(Msg::Job(job))
                    .map_err(|_| CardsError::Stopped)?;
                self.wake.wake();
                None
            }
            Ok(share::Submitted::Queued(lease_end)) => lease_end,
            Err((busy, _job)) => return Err(CardsError::Busy(busy)),
        };
        Ok(Scheduled::Waiting(rx, lease_end))
    }

    /// Takes (or renews) `caller`'s exclusive lease on a card for `lease` (capped by
    /// `[cards] max_lease_secs`); a CPS's signing session ends at once. `None`: no such card.
    pub async fn lock(
        &self,
        caller: &Caller,
        card: CardKey<'_>,
        lease: std::time::Duration,
    ) -> Result<Option<(Lease, String)>, CardsError> {
        let snapshot = self.snapshot();
        let Some(serial) = Cards::resolve(&snapshot, card) else {
            return Ok(None);
        };
        let serial = serial.to_owned();
        drop(snapshot);
        let lease = lease.min(self.shared.limits.max_lease());
        let taken = {
            let mut state = self.shared.state();
            let index = state.card(card, &serial);
            state.lock(
                index,
                caller.client,
                caller.label(),
                lease,
                tokio::time::Instant::now(),
            )
        }
        .map_err(CardsError::Busy)?;
        tracing::info!(card = card.kind(), serial = %serial, holder = %taken.holder, "card locked");
        if let CardKey::Cps(_) = card {
            self.end_session(serial.clone(), "locked").await?;
        }
        Ok(Some((taken, serial)))
    }

    /// Ends `caller`'s lease `id`; a CPS's signing session ends with it. Returns the card's
    /// kind and serial, `None` when `caller` holds no such lease (ended, expired, unknown).
    pub async fn unlock(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<Option<(&'static str, String)>, CardsError> {
        let Some((kind, serial, ready)) = ({
            let mut state = self.shared.state();
            state
                .unlock(id, caller.client, tokio::time::Instant::now())
                .map(|(card, next)| {
                    let (kind, serial) = state.name(card);
                    (kind, serial.to_owned(), next)
                })
        }) else {
            return Ok(None);
        };
        tracing::info!(card = kind, serial = %serial, "card unlocked");
        if kind == "cps" {
            // Before the waiting jobs go: nobody signs in the session the lock ended.
            self.end_session(serial.clone(), "locked").await?;
        }
        send_ready(&self.tx, &self.wake, ready.into_iter().collect());
        Ok(Some((kind, serial)))
    }

    /// Ends the signing session of the CPS `serial` (its PIN state dropped).
    async fn end_session(&self, serial: String, reason: &'static str) -> Result<(), CardsError> {
        self.run(move |reg| reg.end_session(&serial, reason)).await
    }

    /// A guard that ends `caller`'s leases and waiting jobs when dropped (with its connection).
    pub fn guard(&self, caller: &Caller) -> ClientGuard {
        ClientGuard {
            shared: Arc::clone(&self.shared),
            wake: self.wake.clone(),
            client: caller.client,
        }
    }
}

/// Drains the request queue; returns false when asked to stop.
pub(crate) fn drain(
    rx: &mpsc::Receiver<Msg>,
    reg: &mut Registry,
    events: &broadcast::Sender<CardEvent>,
) -> bool {
    while let Ok(msg) = rx.try_recv() {
        if !handle(msg, reg, events) {
            return false;
        }
    }
    true
}

/// Handles one message; returns false on Stop.
pub(crate) fn handle(msg: Msg, reg: &mut Registry, events: &broadcast::Sender<CardEvent>) -> bool {
    match msg {
        Msg::Job(job) => job(reg),
        Msg::VirtualInserted {
            reader,
            atr,
            channel,
        } => {
            let slot = Slot::open(reader, atr, channel);
            if let Some(why) = &slot.unreadable {
                tracing::warn!(reader = %slot.reader, reason = %why, "card unreadable");
            }
            tracing::info!(reader = %slot.reader, kind = ?slot.kind, "card inserted");
            let info = reg.insert(slot);
            let _ = events.send(CardEvent::Inserted {
                card: Box::new(info),
            });
        }
        Msg::Stop => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::slot::tests::Counted;
    use super::*;
    use fse_simulator::card::VirtualCard;
    use std::sync::Mutex;

    #[test]
    fn a_job_that_changes_nothing_shown_keeps_the_snapshot() {
        let published: Published = Default::default();
        let card = fse_simulator::profiles::default_vitale();
        let atr = card.atr();
        let card = Arc::new(Mutex::new(card));
        let slot = Slot::open(
            "test reader".into(),
            atr,
            Box::new(Counted {
                card,
                apdus: Arc::default(),
            }),
        );
        let mut reg = Registry {
            slots: vec![slot],
            trust: None,
            published: Arc::clone(&published),
            limits: Default::default(),
            events: None,
        };
        let snapshot = || Arc::clone(&published.read().unwrap());
        reg.publish();
        let first = snapshot();
        assert_eq!(first.slots.len(), 1);
        reg.slots[0].authenticate(&[7u8; 32]).unwrap();
        reg.publish();
        assert!(
            Arc::ptr_eq(&first, &snapshot()),
            "a proof of presence shows nothing new"
        );
        reg.slots[0].pin_verified = true;
        reg.publish();
        assert!(snapshot().slots[0].pin_verified, "a change is published");
        reg.slots[0].removed = true;
        reg.publish();
        assert!(
            snapshot().slots.is_empty(),
            "a card gone is no longer shown"
        );
    }
}
