//! Sharing one card between clients: each card's jobs are handed to the card thread one at a
//! time, in turns per client (round-robin over [`ClientId`]), not in arrival order; a job that
//! would wait longer than `[cards] max_wait_ms` behind other clients is refused at once
//! ([`Busy`]); a client may hold a card alone for a lease (`cards.lock`) that ends at its
//! expiry whatever the client does.
//!
//! [`Share`] is the scheduler's state, behind one mutex shared by the async side (which submits
//! jobs) and the card thread (which ends them and hands the next one over itself, so the card
//! never waits for an async task between two jobs). Its methods take the time as a parameter:
//! the tests drive the clock by hand.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::caller::ClientId;

use super::Job;

/// Names one card for the scheduler: its kind and serial (`None`: the first card of that kind
/// present, as [`super::Snapshot::cps`] and [`super::Snapshot::vitale`] choose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardKey<'a> {
    /// A CPS.
    Cps(Option<&'a str>),
    /// A Vitale card.
    Vitale(Option<&'a str>),
}

impl CardKey<'_> {
    /// `cps` or `vitale`, as the API names the kinds.
    pub fn kind(&self) -> &'static str {
        match self {
            CardKey::Cps(_) => "cps",
            CardKey::Vitale(_) => "vitale",
        }
    }

    fn slot(&self) -> usize {
        match self {
            CardKey::Cps(_) => 0,
            CardKey::Vitale(_) => 1,
        }
    }
}

/// A job refused because the card is taken for longer than the caller may wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    /// `cps` or `vitale`.
    pub card: &'static str,
    /// The card's serial.
    pub serial: String,
    /// When the job would likely have been served, in milliseconds from now.
    pub retry_after_ms: u64,
    /// Why: `lock` (another client holds the card) or `queue` (other clients' jobs ahead).
    pub reason: &'static str,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match self.reason {
            "lock" => "locked by another client",
            _ => "busy with other clients' work",
        };
        write!(
            f,
            "the {} {} is {why}: retry after {} ms",
            self.card, self.serial, self.retry_after_ms
        )
    }
}

/// A card held by one client until `expires`.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Its id, given to the holder for `cards.unlock`.
    pub id: u64,
    /// The holder.
    pub client: ClientId,
    /// The holder as logs and `cards.list` name it.
    pub holder: String,
    /// When it ends, whatever the holder does.
    pub expires: Instant,
    /// The same, on the wall clock (RFC 3339), for answers.
    pub expires_at: String,
}

/// One card's queue.
struct CardQueue {
    /// `cps` or `vitale`.
    kind: &'static str,
    /// The card's serial.
    serial: String,
    /// The client whose job is on the card thread now.
    running: Option<ClientId>,
    /// Clients with jobs waiting, in turn order; each with its jobs in arrival order.
    ring: VecDeque<(ClientId, VecDeque<Job>)>,
    /// Emptied job queues kept for the next client that waits: no allocation per job in a
    /// steady stream of clients taking turns.
    spare: Vec<VecDeque<Job>>,
    /// Moving average of this card's job time (exponential, weight 1/8), in microseconds.
    avg_us: u64,
    /// The exclusive lease, while one is held (an expired one is dropped when next looked at).
    lease: Option<Lease>,
}

/// What [`Share::submit`] decided.
pub enum Submitted {
    /// The card is free for this client: the job goes to the card thread now.
    RunNow(Job),
    /// The job waits its turn; when a lease held by another client keeps it waiting, the lease's
    /// end (the scheduler must be looked at again then: nobody else will).
    Queued(Option<Instant>),
}

/// The scheduler's state for every card seen.
#[derive(Default)]
pub struct Share {
    /// Card index by serial, per kind (CPS, Vitale): looked up with a borrowed serial.
    index: [HashMap<String, usize>; 2],
    /// The cards' queues (a card, once seen, keeps its index).
    cards: Vec<CardQueue>,
    /// The last lease id given.
    last_lease: u64,
}

/// A moving average step: `avg + (sample - avg) / 8`; the first sample is taken as is.
fn average(avg_us: u64, sample: Duration) -> u64 {
    let sample = u64::try_from(sample.as_micros()).unwrap_or(u64::MAX);
    if avg_us == 0 {
        sample
    } else {
        avg_us - avg_us / 8 + sample / 8
    }
}

impl Share {
    /// The index of a card (kind and resolved serial), made on first sight.
    pub fn card(&mut self, key: CardKey<'_>, serial: &str) -> usize {
        if let Some(&i) = self.index[key.slot()].get(serial) {
            return i;
        }
        let i = self.cards.len();
        self.cards.push(CardQueue {
            kind: key.kind(),
            serial: serial.to_owned(),
            running: None,
            ring: VecDeque::new(),
            spare: Vec::new(),
            avg_us: 0,
            lease: None,
        });
        self.index[key.slot()].insert(serial.to_owned(), i);
        i
    }

    /// The lease on a card, when one is held and not expired (an expired one is dropped).
    fn live_lease(&mut self, card: usize, now: Instant) -> Option<&Lease> {
        let q = &mut self.cards[card];
        if q.lease.as_ref().is_some_and(|l| l.expires <= now) {
            if let Some(l) = q.lease.take() {
                tracing::info!(card = q.kind, serial = %q.serial, holder = %l.holder, "card lease expired");
            }
        }
        q.lease.as_ref()
    }

    /// A job of `client` for `card`: run now, queued, or refused when it would wait longer than
    /// `max_wait` behind another client (never when no other client waits or holds the card).
    pub fn submit(
        &mut self,
        card: usize,
        client: ClientId,
        job: Job,
        now: Instant,
        max_wait: Duration,
    ) -> Result<Submitted, (Busy, Job)> {
        let live = self
            .live_lease(card, now)
            .map(|l| (l.client == client, l.expires));
        let mine = live.is_some_and(|(mine, _)| mine);
        let lease = live.filter(|(mine, _)| !mine).map(|(_, end)| end);
        let q = &mut self.cards[card];
        if q.running.is_none() && lease.is_none() && (q.ring.is_empty() || mine) {
            q.running = Some(client);
            return Ok(Submitted::RunNow(job));
        }
        // Jobs ahead in turn order: the one running, this client's own, and of every other
        // client as many as get a turn before this client's next one.
        let own = q
            .ring
            .iter()
            .find(|(c, _)| *c == client)
            .map_or(0, |(_, jobs)| jobs.len());
        let others: usize = q
            .ring
            .iter()
            // While this client holds the card, nobody else's job goes before its own.
            .filter(|(c, _)| *c != client && !mine)
            .map(|(_, jobs)| jobs.len().min(own + 1))
            .sum();
        let ahead = usize::from(q.running.is_some()) + own + others;
        let lease_left = lease.map_or(Duration::ZERO, |end| end.saturating_duration_since(now));
        let wait = lease_left + Duration::from_micros(q.avg_us.saturating_mul(ahead as u64));
        if (lease.is_some() || others > 0) && wait > max_wait {
            let busy = Busy {
                card: q.kind,
                serial: q.serial.clone(),
                retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                reason: if lease.is_some() { "lock" } else { "queue" },
            };
            return Err((busy, job));
        }
        match q.ring.iter_mut().find(|(c, _)| *c == client) {
            Some((_, jobs)) => jobs.push_back(job),
            None => {
                let mut jobs = q.spare.pop().unwrap_or_default();
                jobs.push_back(job);
                q.ring.push_back((client, jobs));
            }
        }
        Ok(Submitted::Queued(lease))
    }

    /// The next job to hand to the card thread for `card`, when the card is free: the holder's
    /// while a lease is held, else the next client's in turn.
    pub fn next(&mut self, card: usize, now: Instant) -> Option<Job> {
        let holder = self.live_lease(card, now).map(|l| l.client);
        let q = &mut self.cards[card];
        if q.running.is_some() {
            return None;
        }
        let at = match holder {
            Some(h) => q.ring.iter().position(|(c, _)| *c == h)?,
            None => 0,
        };
        let (client, mut jobs) = q.ring.remove(at)?;
        let job = jobs.pop_front()?;
        if jobs.is_empty() {
            q.spare.push(jobs);
        } else {
            // Served: to the back of the turn order.
            q.ring.push_back((client, jobs));
        }
        q.running = Some(client);
        Some(job)
    }

    /// A job of `card` ended after `took` on the card: the card is free; its next job, if any.
    pub fn done(&mut self, card: usize, took: Duration, now: Instant) -> Option<Job> {
        let q = &mut self.cards[card];
        q.running = None;
        q.avg_us = average(q.avg_us, took);
        self.next(card, now)
    }

    /// Takes or renews (same client) the lease on `card` for `lease`; refused while another
    /// client holds it.
    pub fn lock(
        &mut self,
        card: usize,
        client: ClientId,
        holder: String,
        lease: Duration,
        now: Instant,
    ) -> Result<Lease, Busy> {
        let other = self
            .live_lease(card, now)
            .filter(|l| l.client != client)
            .map(|l| l.expires);
        if let Some(end) = other {
            let q = &self.cards[card];
            return Err(Busy {
                card: q.kind,
                serial: q.serial.clone(),
                retry_after_ms: u64::try_from(end.saturating_duration_since(now).as_millis())
                    .unwrap_or(u64::MAX),
                reason: "lock",
            });
        }
        let id = match &self.cards[card].lease {
            Some(l) => l.id,
            None => {
                self.last_lease += 1;
                self.last_lease
            }
        };
        let wall = chrono::Utc::now()
            + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::zero());
        let l = Lease {
            id,
            client,
            holder,
            expires: now + lease,
            expires_at: wall.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        self.cards[card].lease = Some(l.clone());
        Ok(l)
    }

    /// Ends lease `id` of `client`; returns its card and that card's next job (the card may now
    /// serve others), or `None` when no such lease is held (ended, expired, another's).
    pub fn unlock(
        &mut self,
        id: u64,
        client: ClientId,
        now: Instant,
    ) -> Option<(usize, Option<Job>)> {
        let card = (0..self.cards.len()).find(|&i| {
            self.cards[i]
                .lease
                .as_ref()
                .is_some_and(|l| l.id == id && l.client == client && l.expires > now)
        })?;
        self.cards[card].lease = None;
        Some((card, self.next(card, now)))
    }

    /// A client is gone (its connection closed): its leases end and its waiting jobs are
    /// dropped (their answers have nobody to go to). Returns the jobs that may run now.
    pub fn gone(&mut self, client: ClientId, now: Instant) -> Vec<Job> {
        let mut ready = Vec::new();
        for card in 0..self.cards.len() {
            let q = &mut self.cards[card];
            let mut changed = false;
            if q.lease.as_ref().is_some_and(|l| l.client == client) {
                q.lease = None;
                changed = true;
            }
            if let Some(at) = q.ring.iter().position(|(c, _)| *c == client) {
                q.ring.remove(at);
                changed = true;
            }
            if changed {
                ready.extend(self.next(card, now));
            }
        }
        ready
    }

    /// Every card whose lease has expired and whose waiting jobs may now go: their next jobs.
    pub fn expired(&mut self, now: Instant) -> Vec<Job> {
        let mut ready = Vec::new();
        for card in 0..self.cards.len() {
            if self.cards[card]
                .lease
                .as_ref()
                .is_some_and(|l| l.expires <= now)
            {
                ready.extend(self.next(card, now));
            }
        }
        ready
    }

    /// The lease held on a card (kind and serial), if any and not expired.
    pub fn lease_of(&self, key: CardKey<'_>, serial: &str, now: Instant) -> Option<&Lease> {
        let i = *self.index[key.slot()].get(serial)?;
        self.cards[i].lease.as_ref().filter(|l| l.expires > now)
    }

    /// The card's kind and serial.
    pub fn name(&self, card: usize) -> (&'static str, &str) {
        let q = &self.cards[card];
        (q.kind, &q.serial)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::sync::{Arc, Mutex};

    /// A job that records which client it was for when run.
    fn job(log: &Arc<Mutex<Vec<u64>>>, client: ClientId) -> Job {
        let log = Arc::clone(log);
        Box::new(move |_reg| log.lock().unwrap().push(client.get()))
    }

    fn run(j: Job) {
        j(&mut super::super::Registry::default());
    }

    fn queued(s: Result<Submitted, (Busy, Job)>) -> Option<Instant> {
        match s {
            Ok(Submitted::Queued(until)) => until,
            Ok(Submitted::RunNow(_)) => panic!("ran at once"),
            Err((b, _)) => panic!("refused: {b:?}"),
        }
    }

    const WAIT: Duration = Duration::from_secs(2);

    #[test]
    fn three_clients_take_turns_not_arrival_order() {
        let mut share = Share::default();
        let card = share.card(CardKey::Cps(None), "C1");
        let (a, b, c) = (ClientId::fresh(), ClientId::fresh(), ClientId::fresh());
        let log = Arc::new(Mutex::new(Vec::new()));
        let now = Instant::now();
        let first = match share.submit(card, a, job(&log, a), now, WAIT) {
            Ok(Submitted::RunNow(j)) => j,
            _ => panic!("a free card runs the job at once"),
        };
        // A sends 3 more, then B 2, then C 1: arrival order A A A B B C.
        for (who, n) in [(a, 3), (b, 2), (c, 1)] {
            for _ in 0..n {
                assert!(queued(share.submit(card, who, job(&log, who), now, WAIT)).is_none());
            }
        }
        run(first);
        let mut next = share.done(card, Duration::from_millis(1), now);
        while let Some(j) = next {
            run(j);
            next = share.done(card, Duration::from_millis(1), now);
        }
        let (a, b, c) = (a.get(), b.get(), c.get());
        // Turns: A (running), then A B C, A B, A.
        assert_eq!(*log.lock().unwrap(), vec![a, a, b, c, a, b, a]);
    }

    #[test]
    fn a_long_queue_is_refused_but_never_a_lone_client() {
        let mut share = Share::default();
        let card = share.card(CardKey::Vitale(None), "V1");
        let (a, b) = (ClientId::fresh(), ClientId::fresh());
        let log = Arc::new(Mutex::new(Vec::new()));
        let now = Instant::now();
        // Average 500 ms a job (one job measured).
        let Ok(Submitted::RunNow(j)) = share.submit(card, a, job(&log, a), now, WAIT) else {
            panic!()
        };
        run(j);
        assert!(share.done(card, Duration::from_millis(500), now).is_none());
        // A alone: one running, then 9 queued behind it: 10 × 500 ms = 5 s > 2 s, yet A is the
        // only client waiting, so it is never refused.
        let Ok(Submitted::RunNow(_running)) = share.submit(card, a, job(&log, a), now, WAIT) else {
            panic!()
        };
        for _ in 0..9 {
            queued(share.submit(card, a, job(&log, a), now, WAIT));
        }
        // B: ahead of it the running job and one of A's (A gets one turn before B's first):
        // 2 × 500 ms = 1 s ≤ 2 s: queued.
        queued(share.submit(card, b, job(&log, b), now, WAIT));
        // B's second: running + min(9, 2) of A's + B's own 1 = 4 × 500 ms = 2 s: still ≤ 2 s.
        queued(share.submit(card, b, job(&log, b), now, WAIT));
        // B's third: 1 + min(9, 3) + 2 = 6 × 500 ms = 3 s > 2 s: refused, retry after 3000 ms.
        match share.submit(card, b, job(&log, b), now, WAIT) {
            Err((busy, _)) => {
                assert_eq!(busy.retry_after_ms, 3000);
                assert_eq!(busy.reason, "queue");
                assert_eq!((busy.card, busy.serial.as_str()), ("vitale", "V1"));
            }
            Ok(_) => panic!("B's third job would wait 3 s"),
        }
    }

    #[test]
    fn a_lease_holds_others_off_until_it_expires() {
        let mut share = Share::default();
        let card = share.card(CardKey::Cps(Some("C1")), "C1");
        let (holder, other) = (ClientId::fresh(), ClientId::fresh());
        let log = Arc::new(Mutex::new(Vec::new()));
        // The clock is driven by hand: `t` moves only when the test says.
        let mut t = Instant::now();
        let lease = share
            .lock(card, holder, "h".into(), Duration::from_secs(1), t)
            .unwrap();
        // Another client's job waits (1 s left ≤ 2 s) until the lease's end.
        let until = queued(share.submit(card, other, job(&log, other), t, WAIT));
        assert_eq!(until, Some(lease.expires));
        // The holder's own job runs at once.
        assert!(matches!(
            share.submit(card, holder, job(&log, holder), t, WAIT),
            Ok(Submitted::RunNow(_))
        ));
        assert!(share.done(card, Duration::from_millis(1), t).is_none());
        // Nobody may lock it meanwhile.
        let refused = share
            .lock(card, other, "o".into(), Duration::from_secs(30), t)
            .unwrap_err();
        assert_eq!(refused.retry_after_ms, 1000);
        t += Duration::from_millis(999);
        assert!(share.expired(t).is_empty(), "1 ms left");
        t += Duration::from_millis(1);
        let ready = share.expired(t);
        assert_eq!(ready.len(), 1, "the waiting job goes at the lease's end");
        ready.into_iter().for_each(run);
        assert_eq!(*log.lock().unwrap(), vec![other.get()]);
        // The holder can no longer unlock what expired.
        assert!(share.unlock(lease.id, holder, t).is_none());
        // A lease longer than the wait bound: another client is refused, retry after the
        // lease left (5 s).
        share
            .lock(card, holder, "h".into(), Duration::from_secs(5), t)
            .unwrap();
        share.done(card, Duration::from_millis(1), t);
        match share.submit(card, other, job(&log, other), t, WAIT) {
            Err((busy, _)) => {
                assert_eq!(busy.reason, "lock");
                // 5 s lease left + no job ahead (the last job ended) = 5000 ms.
                assert_eq!(busy.retry_after_ms, 5000);
            }
            Ok(_) => panic!("held 5 s, wait bound 2 s"),
        }
    }

    #[test]
    fn a_client_gone_releases_its_lease_and_its_jobs() {
        let mut share = Share::default();
        let card = share.card(CardKey::Cps(None), "C1");
        let (holder, other) = (ClientId::fresh(), ClientId::fresh());
        let log = Arc::new(Mutex::new(Vec::new()));
        let now = Instant::now();
        share
            .lock(card, holder, "h".into(), Duration::from_secs(1), now)
            .unwrap();
        queued(share.submit(card, other, job(&log, other), now, WAIT));
        let ready = share.gone(holder, now);
        assert_eq!(ready.len(), 1, "the other client's job goes at once");
        ready.into_iter().for_each(run);
        assert_eq!(*log.lock().unwrap(), vec![other.get()]);
        assert!(share.lease_of(CardKey::Cps(None), "C1", now).is_none());
    }
}
