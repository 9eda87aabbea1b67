//! What the API's handlers, `billing` and `doctor` share: [`Context`] (the cards, the queue,
//! the batcher's switches, the event bus, the live settings) and what `system.doctor` needs of
//! the running service ([`DoctorSetup`]). It depends on none of them, so that none of them
//! depends on `api`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::cards::Cards;
use crate::config::CardBackend;
use crate::store::Store;
use crate::transport::Transport;

/// What the API handlers share.
#[derive(Clone)]
pub struct Context {
    /// Cards.
    pub cards: Cards,
    /// Queue.
    pub store: Store,
    /// Wakes the batcher.
    pub batcher_wake: Arc<Notify>,
    /// Asks the batcher to close open lots now.
    pub close_now: Arc<AtomicBool>,
    /// Asks the batcher to send now, even during a failed send's backoff.
    pub send_now: Arc<AtomicBool>,
    /// Events for `events.subscribe`.
    pub events: crate::events::Bus,
    /// Settings a reload may change (`lots.deadline_alarm_days` here).
    pub live: crate::config::Live,
    /// What `system.doctor` checks.
    pub doctor: Arc<DoctorSetup>,
    /// The network API's state (CA, enrolled workstations, rights, pairing codes).
    pub network: Arc<crate::net::Network>,
    /// The cards of the other fseds (`[remote]`).
    pub remote: crate::remote::RemoteCards,
    /// The `cards.sign` answers kept for repeats (by `request_id`).
    pub sign_cache: Arc<tokio::sync::Mutex<crate::remote::SignCache>>,
    /// The paper duplicates' writer (`[paper]`).
    pub paper: Arc<crate::paper::Paper>,
    /// The Vitale app's challenges and token checks (`presence.challenge`, `fse.create`).
    pub presence: Arc<crate::presence::AppTokens>,
    /// Rights online (`[rights]`).
    pub rights: Arc<crate::rights::Rights>,
}

/// What the doctor needs to know of the running service beyond the API context
/// (`crate::doctor::Setup`).
pub struct DoctorSetup {
    /// The card backend in use.
    pub backend: CardBackend,
    /// Virtual reader slot addresses (virtual backend).
    pub virtual_slots: Vec<String>,
    /// The state directory (database, spool).
    pub state_dir: PathBuf,
    /// The transport in use.
    pub transport: Arc<Transport>,
    /// Whether a trust store is configured (without one, every return is refused).
    pub trust_configured: bool,
    /// `[attachments]`: the largest document, the days a degraded sheet's paper may wait.
    pub attachments: crate::config::AttachmentsSection,
}
