//! The event bus: card insertions and removals, sheets accepted, lots
//! closed, signed and sent, ARLs received. Every event is a JSON object with
//! an `event` name; API clients get them as `event` notifications after
//! `events.subscribe`. Events are published after the commit they report.

use serde_json::{json, Value};
use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before it is told it lagged.
pub const CAPACITY: usize = 1024;

/// The publishing side, cheap to clone.
#[derive(Clone)]
pub struct Bus(broadcast::Sender<Value>);

impl Default for Bus {
    fn default() -> Self {
        Bus(broadcast::channel(CAPACITY).0)
    }
}

impl Bus {
    /// Publishes `{"event": name, ...fields}`; nobody listening is fine.
    pub fn publish(&self, name: &str, fields: Value) {
        let mut ev = json!({ "event": name, "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true) });
        if let (Some(obj), Value::Object(extra)) = (ev.as_object_mut(), fields) {
            obj.extend(extra);
        }
        let _ = self.0.send(ev);
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.0.subscribe()
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
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
