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
mod turns;
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
pub use slot::{refusal_to_sign, refusal_to_sign_lots, Slot};
pub use turns::ClientGuard;

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

/// A card's certificate checked against `trust` at `now` (seconds since the epoch): unchecked
/// without a trust store, missing when the card holds none. For a card in this fsed's reader
/// and for another fsed's card alike (whose verdict is never taken).
pub fn check_certificate(
    trust: Option<&TrustStore>,
    certificate: Option<&[u8]>,
    key: &[u8; 32],
    now: i64,
) -> CertCheck {
    match (trust, certificate) {
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
        slot.certificate =
            card.map(|(cert, key)| check_certificate(self.trust.as_deref(), cert, key, now));
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
    shared: Arc<turns::Shared>,
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
        let shared = Arc::new(turns::Shared {
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
