//! Signing sessions: after its PIN, a CPS signs at most `[cards] session_max_lots` lots, for
//! at most `[cards] session_max_hours` hours; then its PIN state is dropped and the batcher
//! waits for the PIN again. A session also ends when the card is locked or unlocked
//! (`locked`), leaves its reader or is reset (`removed`), or its PIN is presented again and
//! refused, or unblocked (`pin`). Each end is announced (`card.session_ended`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::{CardEvent, Registry, Slot};

/// The bounds of card sharing and signing sessions (`[cards]`), read by the scheduler and
/// the card thread.
#[derive(Debug)]
pub struct Limits {
    max_wait_ms: AtomicU64,
    max_lease_secs: AtomicU64,
    session_max_lots: AtomicU64,
    session_max_hours: AtomicU64,
}

impl Default for Limits {
    /// The configuration's defaults: 2000 ms, 30 s, 10000 lots, 12 hours.
    fn default() -> Limits {
        Limits::new(2000, 30, 10_000, 12)
    }
}

impl Limits {
    /// Bounds from `[cards]`: `max_wait_ms`, `max_lease_secs`, `session_max_lots`,
    /// `session_max_hours`.
    pub fn new(max_wait_ms: u64, max_lease_secs: u64, max_lots: u64, max_hours: u64) -> Limits {
        Limits {
            max_wait_ms: AtomicU64::new(max_wait_ms),
            max_lease_secs: AtomicU64::new(max_lease_secs),
            session_max_lots: AtomicU64::new(max_lots),
            session_max_hours: AtomicU64::new(max_hours),
        }
    }

    /// The longest a card job may be expected to wait behind other clients.
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms.load(Ordering::Relaxed))
    }

    /// The longest lease.
    pub fn max_lease(&self) -> Duration {
        Duration::from_secs(self.max_lease_secs.load(Ordering::Relaxed))
    }

    /// Lots a CPS signs after its PIN, at most.
    pub fn session_max_lots(&self) -> u64 {
        self.session_max_lots.load(Ordering::Relaxed)
    }

    /// How long a signing session lasts, at most.
    pub fn session_max_age(&self) -> chrono::Duration {
        let hours = self.session_max_hours.load(Ordering::Relaxed);
        chrono::Duration::hours(i64::try_from(hours).unwrap_or(i64::MAX / 3_600_000))
    }
}

/// A CPS's signing session, from its PIN on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// When the PIN was verified.
    pub started: chrono::DateTime<chrono::Utc>,
    /// Lots signed since.
    pub lots_signed: u64,
}

/// What `cards.list` shows of a signing session.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// When the PIN was verified (RFC 3339).
    pub started_at: String,
    /// Lots signed since.
    pub lots_signed: u64,
    /// Lots it may still sign.
    pub lots_left: u64,
    /// When it ends at the latest (RFC 3339).
    pub expires_at: String,
}

impl Slot {
    /// The session as `cards.list` shows it (`None`: no verified PIN).
    pub fn session_info(&self, limits: &Limits) -> Option<SessionInfo> {
        let s = self.session.as_ref()?;
        let secs = chrono::SecondsFormat::Secs;
        Some(SessionInfo {
            started_at: s.started.to_rfc3339_opts(secs, true),
            lots_signed: s.lots_signed,
            lots_left: limits.session_max_lots().saturating_sub(s.lots_signed),
            expires_at: (s.started + limits.session_max_age()).to_rfc3339_opts(secs, true),
        })
    }

    /// One more lot signed in this session.
    pub fn lot_signed(&mut self) {
        if let Some(s) = &mut self.session {
            s.lots_signed += 1;
        }
    }
}

impl Registry {
    /// Brings every CPS's session in line with its PIN state: a PIN verified opens one; a
    /// session over its lots or hours, or whose PIN state was lost, ends (announced). Cheap:
    /// run before and after each job.
    pub fn sessions(&mut self) {
        let now = chrono::Utc::now();
        let max_lots = self.limits.session_max_lots();
        let max_age = self.limits.session_max_age();
        for slot in &mut self.slots {
            let reason = match &slot.session {
                None if slot.pin_verified && !slot.removed => {
                    slot.session = Some(Session {
                        started: now,
                        lots_signed: 0,
                    });
                    None
                }
                None => None,
                Some(_) if slot.removed => Some("removed"),
                Some(_) if !slot.pin_verified => Some("pin"),
                Some(s) if s.lots_signed >= max_lots => Some("lots"),
                Some(s) if now >= s.started + max_age => Some("hours"),
                Some(_) => None,
            };
            if let Some(reason) = reason {
                if matches!(reason, "lots" | "hours") {
                    // The card is still verified: it forgets its PIN too.
                    slot.forget_pin();
                }
                end(slot, reason, self.events.as_ref());
            }
        }
    }

    /// Ends the session of the CPS `serial` (its PIN state dropped), if it has one.
    pub fn end_session(&mut self, serial: &str, reason: &'static str) {
        let events = self.events.clone();
        if let Ok(slot) = self.cps(Some(serial)) {
            if slot.session.is_some() || slot.pin_verified {
                slot.forget_pin();
                end(slot, reason, events.as_ref());
            }
        }
        self.publish();
    }
}

/// Ends a slot's session and PIN state, and says so.
fn end(
    slot: &mut Slot,
    reason: &'static str,
    events: Option<&tokio::sync::broadcast::Sender<CardEvent>>,
) {
    slot.session = None;
    slot.pin_verified = false;
    let serial = slot
        .cps
        .as_ref()
        .map(|c| c.holder.serial.clone())
        .unwrap_or_default();
    tracing::info!(serial = %serial, reason, "CPS signing session ended: PIN needed again");
    if let Some(events) = events {
        let _ = events.send(CardEvent::SessionEnded { serial, reason });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use fse_formats::cards::Pin;
    use fse_formats::channel::{CardChannel, ChannelError};
    use fse_simulator::card::VirtualCard;
    use std::sync::Arc;

    /// The simulated CPS, in process.
    struct Cps(fse_simulator::card::VirtualCps);

    impl CardChannel for Cps {
        fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
            Ok(self.0.process(command))
        }
    }

    fn registry(limits: Limits) -> (Registry, tokio::sync::broadcast::Receiver<CardEvent>) {
        let cps = fse_simulator::profiles::default_cps();
        let atr = cps.atr();
        let mut slot = Slot::open("r".into(), atr, Box::new(Cps(cps)));
        slot.verify_pin(&Pin::new(fse_simulator::profiles::DEFAULT_PIN).unwrap())
            .unwrap();
        let (tx, rx) = tokio::sync::broadcast::channel(8);
        let reg = Registry {
            slots: vec![slot],
            limits: Arc::new(limits),
            events: Some(tx),
            ..Registry::default()
        };
        (reg, rx)
    }

    fn ended(rx: &mut tokio::sync::broadcast::Receiver<CardEvent>) -> &'static str {
        match rx.try_recv().unwrap() {
            CardEvent::SessionEnded { reason, .. } => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_session_ends_after_its_lots_and_the_card_forgets_its_pin() {
        let (mut reg, mut rx) = registry(Limits::new(2000, 30, 2, 12));
        reg.sessions();
        let info = reg.slots[0].session_info(&reg.limits).unwrap();
        assert_eq!((info.lots_signed, info.lots_left), (0, 2));
        reg.slots[0].lot_signed();
        reg.sessions();
        // 1 of 2 lots: still on.
        assert!(reg.slots[0].pin_verified);
        reg.slots[0].lot_signed();
        reg.sessions();
        assert_eq!(ended(&mut rx), "lots");
        assert!(!reg.slots[0].pin_verified && reg.slots[0].session.is_none());
        // The card itself no longer holds the PIN verified: 3 tries shown, not "verified".
        assert_eq!(reg.slots[0].pin_tries_left().unwrap(), Some(3));
    }

    #[test]
    fn a_session_ends_after_its_hours() {
        let (mut reg, mut rx) = registry(Limits::new(2000, 30, 1000, 12));
        reg.sessions();
        // Started 12 h ago (the bound), to the second: over.
        if let Some(s) = &mut reg.slots[0].session {
            s.started -= chrono::Duration::hours(12);
        }
        reg.sessions();
        assert_eq!(ended(&mut rx), "hours");
        assert!(!reg.slots[0].pin_verified);
    }
}
