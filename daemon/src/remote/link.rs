//! One link to another fsed: connect, subscribe to its card events, list its cards, then
//! carry calls and events until the link breaks; again after a pause of 1 s doubling to 30 s.
//! The cards of a link that is down are not shown (they cannot be used).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fse_formats::api::ErrorObject;
use fse_formats::pki::TrustStore;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Notify};

use super::connector::{Connector, Stream};
use super::{now_text, Answer, Link, Outgoing, RemoteCard};
use crate::events::Bus;
use crate::shutdown::Shutdown;

/// The first pause before reconnecting.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest pause before reconnecting.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The longest line read from the other fsed (a `cards.list` answer is a few KiB).
const MAX_LINE: u64 = 1 << 20;

/// What a link's task needs.
pub(super) struct Task {
    pub(super) link: Arc<Link>,
    pub(super) connector: Arc<dyn Connector>,
    pub(super) trust: Option<Arc<TrustStore>>,
    pub(super) bus: Bus,
    pub(super) wake: Arc<Notify>,
}

/// Who waits for an answer.
enum Waiter {
    /// The link's own `cards.list`.
    List,
    /// The link's own `events.subscribe`.
    Subscribe,
    /// A caller of [`super::RemoteCards`].
    Call(tokio::sync::oneshot::Sender<Answer>),
}

impl Task {
    /// Keeps the link up until `shutdown`.
    pub(super) async fn run(self, mut shutdown: Shutdown) {
        let mut pause = BACKOFF_MIN;
        loop {
            let cause = tokio::select! {
                _ = shutdown.wait() => return,
                c = self.connector.connect(&self.link.address) => c,
            };
            let cause = match cause {
                Ok(stream) => {
                    let (cause, served) = tokio::select! {
                        _ = shutdown.wait() => return,
                        r = self.session(stream) => r,
                    };
                    if served {
                        pause = BACKOFF_MIN;
                    }
                    cause
                }
                Err(e) => e,
            };
            self.down(&cause);
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(BACKOFF_MAX);
        }
    }

    /// The link is down: its cards are forgotten (each announced removed), calls refused.
    fn down(&self, cause: &str) {
        let gone = {
            let mut s = self.link.lock();
            s.calls = None;
            if s.reachable || s.last_error.is_none() {
                s.since = now_text();
            }
            s.reachable = false;
            s.last_error = Some(cause.to_string());
            std::mem::take(&mut s.cards)
        };
        tracing::warn!(fsed = %self.link.name, address = %self.link.address, cause = %cause, "remote fsed out of reach");
        for c in &gone {
            self.bus.publish(
                "card.removed",
                json!({ "reader": c.location.reader, "location": c.location }),
            );
        }
        if !gone.is_empty() {
            self.wake.notify_one();
        }
    }

    /// The cards listed by the other fsed replace those known; the differences are announced.
    fn listed(&self, result: &Value) {
        let now = chrono::Utc::now().timestamp();
        let trust = self.trust.as_deref();
        let new: Vec<RemoteCard> = result
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| {
                        RemoteCard::read(e, &self.link.name, &self.link.address, trust, now)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let old = {
            let mut s = self.link.lock();
            if !s.reachable {
                s.reachable = true;
                s.since = now_text();
                tracing::info!(fsed = %self.link.name, cards = new.len(), "remote fsed reached");
            }
            std::mem::replace(&mut s.cards, new.clone())
        };
        let same = |a: &RemoteCard, b: &RemoteCard| {
            a.location.reader == b.location.reader && a.serial == b.serial
        };
        for c in old.iter().filter(|o| !new.iter().any(|n| same(o, n))) {
            self.bus.publish(
                "card.removed",
                json!({ "reader": c.location.reader, "location": c.location }),
            );
        }
        for c in new.iter().filter(|n| !old.iter().any(|o| same(o, n))) {
            self.bus.publish(
                "card.inserted",
                json!({
                    "reader": c.location.reader,
                    "kind": c.kind,
                    "serial": c.serial,
                    "atr": c.listed["atr"],
                    "location": c.location,
                }),
            );
        }
        self.wake.notify_one();
    }

    /// One connection: the cause of its end, and whether it got as far as a card list.
    async fn session(&self, stream: Box<dyn Stream>) -> (String, bool) {
        let (rd, mut wr) = tokio::io::split(stream);
        let mut rd = BufReader::new(rd);
        let (tx, mut rx) = mpsc::channel::<Outgoing>(64);
        let mut pending: HashMap<u64, Waiter> = HashMap::new();
        let mut next_id: u64 = 1;
        let mut served = false;
        // Subscribed before listing: a card that comes between the two is not missed.
        let first = [
            (
                "events.subscribe",
                json!({ "events": ["card.inserted", "card.removed"] }),
                Waiter::Subscribe,
            ),
            ("cards.list", Value::Null, Waiter::List),
        ];
        for (method, params, waiter) in first {
            if let Err(e) = send(&mut wr, next_id, method, params).await {
                return (e, served);
            }
            pending.insert(next_id, waiter);
            next_id += 1;
        }
        let mut line = Vec::new();
        loop {
            tokio::select! {
                read = async {
                    line.clear();
                    (&mut rd).take(MAX_LINE).read_until(b'\n', &mut line).await
                } => {
                    match read {
                        Ok(0) => return ("the other fsed closed the connection".into(), served),
                        Err(e) => return (format!("read: {e}"), served),
                        Ok(_) if !line.ends_with(b"\n") => {
                            return (format!("a line longer than {MAX_LINE} bytes"), served)
                        }
                        Ok(_) => {}
                    }
                    let Ok(msg) = serde_json::from_slice::<Value>(&line) else {
                        return ("an answer that is not JSON".into(), served);
                    };
                    match self.incoming(msg, &mut pending) {
                        Incoming::Nothing => {}
                        Incoming::Listed => {
                            if !served {
                                served = true;
                                self.link.lock().calls = Some(tx.clone());
                            }
                        }
                        Incoming::Relist => {
                            if let Err(e) = send(&mut wr, next_id, "cards.list", Value::Null).await {
                                return (e, served);
                            }
                            pending.insert(next_id, Waiter::List);
                            next_id += 1;
                        }
                        Incoming::Failed(why) => return (why, served),
                    }
                }
                Some(call) = rx.recv() => {
                    if let Err(e) = send(&mut wr, next_id, call.method, call.params).await {
                        return (e, served);
                    }
                    pending.insert(next_id, Waiter::Call(call.reply));
                    next_id += 1;
                }
            }
        }
    }

    /// One message from the other fsed: an answer or an event.
    fn incoming(&self, msg: Value, pending: &mut HashMap<u64, Waiter>) -> Incoming {
        if msg["method"] == "event" {
            let ev = &msg["params"];
            // An event of a card the other fsed itself holds remotely (it carries a location):
            // not one of its own cards, maybe one of this fsed's.
            if ev.get("location").is_some() {
                return Incoming::Nothing;
            }
            return match ev["event"].as_str() {
                // Its contents come with the list.
                Some("card.inserted") => Incoming::Relist,
                Some("card.removed") => {
                    let reader = ev["reader"].as_str().unwrap_or_default();
                    let gone = {
                        let mut s = self.link.lock();
                        let (gone, kept) = std::mem::take(&mut s.cards)
                            .into_iter()
                            .partition::<Vec<_>, _>(|c| c.location.reader == reader);
                        s.cards = kept;
                        gone
                    };
                    for c in &gone {
                        self.bus.publish(
                            "card.removed",
                            json!({ "reader": c.location.reader, "location": c.location }),
                        );
                    }
                    Incoming::Nothing
                }
                // `lagged`: some were lost; the list says what is there now.
                Some("lagged") => Incoming::Relist,
                _ => Incoming::Nothing,
            };
        }
        let Some(waiter) = msg["id"].as_u64().and_then(|id| pending.remove(&id)) else {
            return Incoming::Nothing;
        };
        let answer = match (msg.get("result"), msg.get("error")) {
            (Some(r), _) => Answer::Result(r.clone()),
            (None, Some(e)) => match serde_json::from_value::<ErrorObject>(e.clone()) {
                Ok(e) => Answer::Error(e),
                Err(_) => return Incoming::Failed("an error answer that does not read".into()),
            },
            (None, None) => return Incoming::Failed("an answer without result or error".into()),
        };
        match (waiter, answer) {
            (Waiter::Call(reply), answer) => {
                // The caller may have stopped waiting (its timeout): nothing to do then.
                let _ = reply.send(answer);
                Incoming::Nothing
            }
            (Waiter::List, Answer::Result(r)) => {
                self.listed(&r);
                Incoming::Listed
            }
            (Waiter::Subscribe, Answer::Result(_)) => Incoming::Nothing,
            (_, Answer::Error(e)) => Incoming::Failed(format!(
                "the other fsed refused: {} ({})",
                e.message, e.code
            )),
        }
    }
}

/// What a message asks of the session.
enum Incoming {
    Nothing,
    /// The cards were listed.
    Listed,
    /// List the cards again.
    Relist,
    /// The link is of no use: end it.
    Failed(String),
}

/// Writes one request line.
async fn send(
    wr: &mut (impl AsyncWriteExt + Unpin),
    id: u64,
    method: &str,
    params: Value,
) -> Result<(), String> {
    let mut req = json!({ "jsonrpc": "2.0", "id": id, "method": method });
    if !params.is_null() {
        req["params"] = params;
    }
    let mut line = req.to_string().into_bytes();
    line.push(b'\n');
    wr.write_all(&line)
        .await
        .map_err(|e| format!("write: {e}"))?;
    wr.flush().await.map_err(|e| format!("write: {e}"))
}
