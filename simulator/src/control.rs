//! The run-time control of `fse-sim cards`: a Unix socket on which tests and
//! test teams insert, remove and swap cards in the reader slots and read each
//! card's counters, without restarting the simulator. One JSON request per
//! line, one JSON answer per line:
//!
//! - `{"cmd":"insert","slot":0,"profile":"cps-medecin-generaliste"}`
//! - `{"cmd":"remove","slot":0}`
//! - `{"cmd":"stats","slot":0}` → `{"ok":{"profile":…,"apdus":…,"received":…,"signatures":…}}`
//! - `{"cmd":"list"}` → `{"ok":[{"slot":0,"profile":…}, …]}`
//!
//! Errors are `{"error":{"field":…,"message":…}}`. Slot 0 is the first
//! reader port (`--cps-port`), slot 1 the second (`--vitale-port`).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::card::CardStats;
use crate::profiles::Profile;
use crate::vpcd::{self, Latency, SharedCard};

/// Default control socket.
pub const DEFAULT_SOCKET: &str = "/tmp/fse-sim-cards.sock";

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// Put a card of `profile` in `slot`.
    Insert {
        /// Slot index.
        slot: usize,
        /// Built-in profile name or TOML file.
        profile: String,
    },
    /// Take the card out of `slot`.
    Remove {
        /// Slot index.
        slot: usize,
    },
    /// Counters of the card in `slot` (or of the last one removed from it).
    Stats {
        /// Slot index.
        slot: usize,
    },
    /// What each slot holds.
    List,
}

struct Inserted {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

struct SlotState {
    addr: String,
    profile: Option<String>,
    stats: Option<Arc<CardStats>>,
    inserted: Option<Inserted>,
}

/// The reader slots and the cards in them.
pub struct Slots {
    slots: tokio::sync::Mutex<Vec<SlotState>>,
    latency: Latency,
}

fn error(field: &str, message: impl std::fmt::Display) -> Value {
    json!({ "error": { "field": field, "message": message.to_string() } })
}

fn stats_json(profile: &Option<String>, s: &CardStats) -> Value {
    json!({
        "profile": profile,
        "apdus": s.apdus.load(Ordering::Relaxed),
        "received": s.received.load(Ordering::Relaxed),
        "verifies": s.verifies.load(Ordering::Relaxed),
        "signatures": s.signatures.load(Ordering::Relaxed),
        "authentications": s.authentications.load(Ordering::Relaxed),
    })
}

impl Slots {
    /// Empty slots on the readers at `addrs`.
    pub fn new(addrs: Vec<String>, latency: Latency) -> Arc<Slots> {
        Arc::new(Slots {
            slots: tokio::sync::Mutex::new(
                addrs
                    .into_iter()
                    .map(|addr| SlotState {
                        addr,
                        profile: None,
                        stats: None,
                        inserted: None,
                    })
                    .collect(),
            ),
            latency,
        })
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request) -> Value {
        let mut slots = self.slots.lock().await;
        let count = slots.len();
        let slot_at = |slot: usize| {
            if slot < count {
                Ok(slot)
            } else {
                Err(error(
                    "slot",
                    format!("no slot {slot}: slots are 0 to {}", count.saturating_sub(1)),
                ))
            }
        };
        match req {
            Request::List => json!({ "ok": slots.iter().enumerate().map(|(i, s)| json!({
                "slot": i, "reader": s.addr, "profile": s.inserted.as_ref().and(s.profile.clone()),
            })).collect::<Vec<_>>() }),
            Request::Stats { slot } => match slot_at(slot) {
                Err(e) => e,
                Ok(i) => match &slots[i].stats {
                    Some(s) => json!({ "ok": stats_json(&slots[i].profile, s) }),
                    None => error("slot", format!("slot {i} has never held a card")),
                },
            },
            Request::Remove { slot } => match slot_at(slot) {
                Err(e) => e,
                Ok(i) => match slots[i].inserted.take() {
                    None => error("slot", format!("slot {i} is empty")),
                    Some(ins) => {
                        let _ = ins.stop.send(true);
                        let _ = ins.task.await;
                        json!({ "ok": { "slot": i, "removed": slots[i].profile } })
                    }
                },
            },
            Request::Insert { slot, profile } => {
                let i = match slot_at(slot) {
                    Ok(i) => i,
                    Err(e) => return e,
                };
                if slots[i].inserted.is_some() {
                    return error(
                        "slot",
                        format!("slot {i} already holds a card: remove it first"),
                    );
                }
                let (card, stats) = match Profile::load(&profile).and_then(|p| p.card()) {
                    Ok(c) => c,
                    Err(e) => return error("profile", e),
                };
                let card: SharedCard = Arc::new(Mutex::new(card));
                let (stop, rx) = watch::channel(false);
                let task = tokio::spawn(vpcd::serve(slots[i].addr.clone(), card, self.latency, rx));
                slots[i].inserted = Some(Inserted { stop, task });
                slots[i].profile = Some(profile.clone());
                slots[i].stats = Some(stats);
                json!({ "ok": { "slot": i, "inserted": profile } })
            }
        }
    }

    /// Takes every card out.
    pub async fn remove_all(&self) {
        let n = self.slots.lock().await.len();
        for slot in 0..n {
            let _ = self.handle(Request::Remove { slot }).await;
        }
    }
}

/// Serves the control socket at `path` until the task is dropped.
pub async fn serve(path: PathBuf, slots: Arc<Slots>) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let slots = Arc::clone(&slots);
        tokio::spawn(async move {
            let _ = connection(stream, &slots).await;
        });
    }
}

async fn connection(stream: UnixStream, slots: &Slots) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match serde_json::from_str::<Request>(&line) {
            Ok(req) => slots.handle(req).await,
            Err(e) => error("request", e),
        };
        let mut out = answer.to_string();
        out.push('\n');
        write.write_all(out.as_bytes()).await?;
    }
    Ok(())
}

/// Sends one request to a running `fse-sim cards` and returns its answer.
pub fn request(path: &Path, req: &Request) -> Result<Value, String> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        format!(
            "control socket {}: {e} (is `fse-sim cards` running?)",
            path.display()
        )
    })?;
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&answer).map_err(|e| format!("control answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_refuse_what_a_hand_could_not_do() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let slots = Slots::new(vec![addr], Latency::NONE);
        let r = slots.handle(Request::Remove { slot: 0 }).await;
        assert_eq!(r["error"]["field"], "slot", "{r}");
        let r = slots
            .handle(Request::Insert {
                slot: 3,
                profile: "cps-medecin-generaliste".into(),
            })
            .await;
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no slot 3"),
            "{r}"
        );
        let r = slots
            .handle(Request::Insert {
                slot: 0,
                profile: "no-such-card".into(),
            })
            .await;
        assert_eq!(r["error"]["field"], "profile", "{r}");
        let r = slots
            .handle(Request::Insert {
                slot: 0,
                profile: "cps-medecin-generaliste".into(),
            })
            .await;
        assert_eq!(r["ok"]["inserted"], "cps-medecin-generaliste", "{r}");
        // The card connects to the reader.
        let _conn = listener.accept().await.unwrap();
        let r = slots
            .handle(Request::Insert {
                slot: 0,
                profile: "vitale-famille".into(),
            })
            .await;
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("already holds"),
            "{r}"
        );
        let r = slots.handle(Request::Stats { slot: 0 }).await;
        assert_eq!(r["ok"]["signatures"], 0, "{r}");
        let r = slots.handle(Request::List).await;
        assert_eq!(r["ok"][0]["profile"], "cps-medecin-generaliste", "{r}");
        let r = slots.handle(Request::Remove { slot: 0 }).await;
        assert!(r.get("ok").is_some(), "{r}");
        let r = slots.handle(Request::List).await;
        assert!(r["ok"][0]["profile"].is_null(), "{r}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_socket_answers_bad_lines_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let slots = Slots::new(vec!["127.0.0.1:9".into()], Latency::NONE);
        let server = tokio::spawn(serve(path.clone(), slots));
        for _ in 0..100 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let p = path.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut s = std::os::unix::net::UnixStream::connect(&p).unwrap();
            use std::io::{BufRead, Write};
            s.write_all(b"{\"cmd\":\"explode\"}\n").unwrap();
            let mut line = String::new();
            std::io::BufReader::new(s).read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        assert!(r.contains("\"field\":\"request\""), "{r}");
        let r = tokio::task::spawn_blocking(move || request(&path, &Request::List))
            .await
            .unwrap()
            .unwrap();
        assert!(r["ok"].is_array(), "{r}");
        server.abort();
    }
}
