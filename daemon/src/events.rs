//! The event bus: card insertions and removals, sheets accepted, lots
//! closed, signed and sent, ARLs received. Every event is a JSON object with
//! an `event` name; API clients get them as `event` notifications after
//! `events.subscribe`. Events are published after the commit they report.
//!
//! Each subscription has its selection and its own bounded queue: an event
//! goes only to the subscriptions that asked for it, and one nobody asked for
//! is not even built. A subscriber that falls [`CAPACITY`] events behind
//! loses the newest ones and is told how many before its next event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

/// How many events a slow subscriber may fall behind before it is told it lagged.
pub const CAPACITY: usize = 1024;

/// The events a subscription asked for (`None`: all of them), shared between the
/// subscription and whoever may change it.
#[derive(Clone, Default)]
pub struct Selection(Arc<Mutex<Option<Vec<String>>>>);

impl Selection {
    fn lock(&self) -> MutexGuard<'_, Option<Vec<String>>> {
        // Poisoned only by a panic elsewhere; the selection is a plain value, still whole.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, only `events` (`None`: all).
    pub fn set(&self, events: Option<Vec<String>>) {
        *self.lock() = events;
    }

    /// Whether `name` is selected.
    pub fn wants(&self, name: &str) -> bool {
        match &*self.lock() {
            Some(only) => only.iter().any(|e| e == name),
            None => true,
        }
    }
}

struct Subscriber {
    id: u64,
    selection: Selection,
    tx: mpsc::Sender<Value>,
    missed: Arc<AtomicU64>,
}

#[derive(Default)]
struct Subscribers {
    next_id: u64,
    list: Vec<Subscriber>,
}

/// `{"event": name, "at": now, ...fields}`: an event as subscribers get it.
pub fn event(name: &str, fields: Value) -> Value {
    let mut ev = json!({ "event": name, "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true) });
    if let (Some(obj), Value::Object(extra)) = (ev.as_object_mut(), fields) {
        obj.extend(extra);
    }
    ev
}

/// The publishing side, cheap to clone.
#[derive(Clone, Default)]
pub struct Bus(Arc<Mutex<Subscribers>>);

/// What a subscription receives.
#[derive(Debug)]
pub enum Received {
    /// An event it selected.
    Event(Value),
    /// This many events it selected were dropped because it fell behind.
    Lagged(u64),
}

/// One subscriber's end; dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    rx: mpsc::Receiver<Value>,
    missed: Arc<AtomicU64>,
    bus: Bus,
}

impl Subscription {
    /// The next event, or the count of those lost first; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Received> {
        // Events are lost only while this queue is full, so a loss is always seen here before
        // the queue runs dry.
        let missed = self.missed.swap(0, Ordering::Relaxed);
        if missed > 0 {
            return Some(Received::Lagged(missed));
        }
        self.rx.recv().await.map(Received::Event)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.bus.lock().list.retain(|s| s.id != self.id);
    }
}

impl Bus {
    fn lock(&self) -> MutexGuard<'_, Subscribers> {
        // Poisoned only by a panic elsewhere; the list stays consistent (push / retain).
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes `{"event": name, "at": …, ...fields}` to the subscriptions that selected
    /// `name`; nobody listening is fine, and then nothing is built.
    pub fn publish(&self, name: &str, fields: Value) {
        let subs = self.lock();
        let mut wanting = subs.list.iter().filter(|s| s.selection.wants(name));
        let Some(first) = wanting.next() else {
            return;
        };
        let ev = event(name, fields);
        for s in std::iter::once(first).chain(wanting) {
            if let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(ev.clone()) {
                s.missed.fetch_add(1, Ordering::Relaxed);
            }
            // Closed: the subscription is being dropped and removes itself.
        }
    }

    /// A new subscription to the events `selection` names (read at each event).
    pub fn subscribe(&self, selection: Selection) -> Subscription {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let missed = Arc::new(AtomicU64::new(0));
        let mut subs = self.lock();
        let id = subs.next_id;
        subs.next_id += 1;
        subs.list.push(Subscriber {
            id,
            selection,
            tx,
            missed: Arc::clone(&missed),
        });
        Subscription {
            id,
            rx,
            missed,
            bus: self.clone(),
        }
    }
}

/// Forwards the card thread's events to the bus until the card layer stops.
pub async fn forward_cards(mut rx: broadcast::Receiver<crate::cards::CardEvent>, bus: Bus) {
    loop {
        match rx.recv().await {
            Ok(crate::cards::CardEvent::Inserted { card }) => bus.publish(
                "card.inserted",
                json!({ "reader": card.reader, "kind": card.kind, "serial": card.serial, "atr": card.atr }),
            ),
            Ok(crate::cards::CardEvent::Removed { reader }) => bus.publish("card.removed", json!({ "reader": reader })),
            Ok(crate::cards::CardEvent::ReaderFound { reader }) => bus.publish("reader.found", json!({ "reader": reader })),
            Ok(crate::cards::CardEvent::ReaderLost { reader, reason }) => {
                bus.publish("reader.lost", json!({ "reader": reader, "reason": reason }))
            }
            Ok(crate::cards::CardEvent::SessionEnded { serial, reason }) => {
                bus.publish("card.session_ended", json!({ "serial": serial, "reason": reason }))
            }
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subscription_gets_what_it_selected_and_how_many_it_lost() {
        let bus = Bus::default();
        let only_sent = Selection::default();
        only_sent.set(Some(vec!["lot.sent".into()]));
        let mut sent = bus.subscribe(only_sent.clone());
        let mut all = bus.subscribe(Selection::default());

        bus.publish("sheet.accepted", json!({"id": 1}));
        bus.publish("lot.sent", json!({"lot_id": "L1"}));
        match sent.recv().await {
            Some(Received::Event(ev)) => {
                assert_eq!(ev["event"], "lot.sent");
                assert_eq!(ev["lot_id"], "L1");
                assert!(ev["at"].as_str().is_some_and(|a| a.ends_with('Z')));
            }
            other => panic!("expected lot.sent, got {other:?}"),
        }
        for expected in ["sheet.accepted", "lot.sent"] {
            match all.recv().await {
                Some(Received::Event(ev)) => assert_eq!(ev["event"], expected),
                other => panic!("expected {expected}, got {other:?}"),
            }
        }

        // Past its queue, a subscriber loses the newest events and is told how many first.
        for i in 0..CAPACITY + 5 {
            bus.publish("lot.sent", json!({ "n": i }));
        }
        assert!(matches!(sent.recv().await, Some(Received::Lagged(5))));
        for i in 0..CAPACITY {
            match sent.recv().await {
                Some(Received::Event(ev)) => assert_eq!(ev["n"], i),
                other => panic!("expected event {i}, got {other:?}"),
            }
        }

        // A new selection holds from the next event; a dropped subscription is gone.
        only_sent.set(Some(vec!["sheet.accepted".into()]));
        drop(all);
        assert_eq!(bus.lock().list.len(), 1);
        bus.publish("lot.sent", json!({}));
        bus.publish("sheet.accepted", json!({"id": 2}));
        match sent.recv().await {
            Some(Received::Event(ev)) => assert_eq!(ev["id"], 2),
            other => panic!("expected sheet.accepted, got {other:?}"),
        }
        drop(sent);
        assert!(bus.lock().list.is_empty());
    }
}
