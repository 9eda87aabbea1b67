//! [`Cards::run_for`]: one card's jobs handed to the card thread in turns per client, through
//! the scheduler of `share`; the leases of `cards.lock`; the guard that ends a client's leases
//! when its connection closes.

use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;

use super::share;
use super::{CardKey, Cards, CardsError, Job, Lease, Limits, Msg, Registry, Snapshot, Waker};
use crate::caller::{Caller, ClientId};

/// What the async side and the card thread share to hand one card's jobs over in turns.
pub(super) struct Shared {
    /// The scheduler.
    pub(super) state: std::sync::Mutex<share::Share>,
    /// The card thread's queue: the card thread itself sends the next job of a card when one
    /// ends.
    pub(super) tx: mpsc::Sender<Msg>,
    /// Waits and leases' bounds; signing sessions' bounds.
    pub(super) limits: Arc<Limits>,
}

impl Shared {
    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, share::Share> {
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

impl Cards {
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
        let (mut rx, mut lease_end) = match self.schedule(caller, card, f)? {
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
                        // Looked at once: from now on this job waits for its turn only.
                        lease_end = None;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::cards::{Backend, VirtualReaderConfig};

    #[tokio::test]
    async fn a_lease_ends_when_its_holders_guard_is_dropped() {
        // A card layer without cards: the scheduler alone is looked at.
        let slot = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let (cards, _thread) = Cards::start(
            Backend::Virtual(VirtualReaderConfig {
                slots: vec![fse_formats::vpcd::Endpoint::Tcp(slot)],
            }),
            None,
            Limits::default(),
        )
        .unwrap();
        let (holder, other) = (Caller::local(1000), Caller::local(1000));
        let now = tokio::time::Instant::now();
        let key = CardKey::Cps(Some("C1"));
        {
            let mut state = cards.shared.state();
            let card = state.card(key, "C1");
            state
                .lock(
                    card,
                    holder.client,
                    holder.label(),
                    std::time::Duration::from_secs(30),
                    now,
                )
                .unwrap();
        }
        let guard = cards.guard(&holder);
        // Another client's guard going changes nothing.
        drop(cards.guard(&other));
        assert!(cards.shared.state().lease_of(key, "C1", now).is_some());
        drop(guard);
        assert!(
            cards.shared.state().lease_of(key, "C1", now).is_none(),
            "the holder's connection closed: its lease ended"
        );
        cards.stop();
    }
}
