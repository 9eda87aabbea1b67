//! The queue under `kill -9`: clients make 10,000 sheets through fsed's
//! socket (over pcscd, with the simulated cards) while fsed is killed with
//! SIGKILL at 20 random moments and restarted each time; a client whose call
//! was cut retries with the same idempotency key. Then every accepted sheet
//! must be in the database exactly once, in exactly one signed lot whose
//! signature and Merkle root verify, and no lot may have been signed twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{order, Proc};
use rand::Rng;
use serde_json::{json, Value};

const SHEETS: u64 = 10_000;
const CLIENTS: u64 = 4;
const KILLS: usize = 20;

/// A client that reports failures instead of panicking: fsed may die under it at any time.
struct Client {
    path: PathBuf,
    conn: Option<BufReader<UnixStream>>,
    next: u64,
}

impl Client {
    fn call(&mut self, method: &str, params: Value) -> Option<Value> {
        if self.conn.is_none() {
            let s = UnixStream::connect(&self.path).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut()?;
        self.next += 1;
        let line = json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params})
            .to_string()
            + "\n";
        let answer = (|| {
            conn.get_mut().write_all(line.as_bytes()).ok()?;
            let mut reply = String::new();
            if conn.read_line(&mut reply).ok()? == 0 {
                return None;
            }
            serde_json::from_str::<Value>(&reply).ok()
        })();
        if answer.is_none() {
            self.conn = None;
        }
        answer
    }
}

fn start_fsed(dir: &Path) -> Proc {
    let (p, _) = common::start_fsed(
        dir,
        &[
            "--transport",
            "spool",
            "--lot-max-sheets",
            "200",
            "--lot-max-age-secs",
            "1",
        ],
    );
    p
}

#[test]
fn kill_9_at_twenty_moments_loses_nothing_and_signs_nothing_twice() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let (_sim, control) = common::start_fast_cards(dir.path(), &[]);
    let fsed = Arc::new(Mutex::new(start_fsed(dir.path())));
    let socket = dir.path().join("fsed.sock");

    let accepted: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (socket, accepted, made) = (socket.clone(), accepted.clone(), made.clone());
        clients.push(spawn_client(c, socket, accepted, made));
    }

    // The killer: SIGKILL at random moments spread over the run, then restart.
    let mut rng = rand::thread_rng();
    let mut kills = 0;
    while kills < KILLS {
        let target = (kills as u64 + 1) * SHEETS / (KILLS as u64 + 2);
        while made.load(Ordering::Relaxed) < target {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
        let mut p = fsed.lock().unwrap();
        p.child.kill().unwrap(); // SIGKILL
        p.child.wait().unwrap();
        kills += 1;
        *p = start_fsed(dir.path());
    }
    for c in clients {
        c.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len() as u64, SHEETS);

    sign_the_rest(&socket);
    assert!(fsed.lock().unwrap().terminate().success());

    check_database(dir.path(), &accepted, &control);
}

/// One client thread: creates its share of the sheets, each under its own idempotency key,
/// through every kill (retrying until fsed answers), and records the id fsed gave each key.
fn spawn_client(
    c: u64,
    socket: PathBuf,
    accepted: Arc<Mutex<HashMap<String, i64>>>,
    made: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut client = Client {
            path: socket,
            conn: None,
            next: 0,
        };
        for i in 0..SHEETS / CLIENTS {
            let key = format!("crash-{c}-{i}");
            let started = Instant::now();
            loop {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "{key}: no answer in 120 s"
                );
                let params = json!({"act": {"code": "G"}, "beneficiary": i % 2,
                                        "tiers_payant": {"amo": true}, "idempotency_key": key});
                match client.call("fse.create", params) {
                    Some(r) if r.get("result").is_some() => {
                        let id = r["result"]["id"].as_i64().unwrap();
                        let before = accepted.lock().unwrap().insert(key.clone(), id);
                        assert!(before.is_none(), "{key} answered twice");
                        made.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Some(r) => match r["error"]["data"]["name"].as_str() {
                        Some("PIN_REQUIRED") => {
                            client.call("cards.verify_pin", json!({"pin": "1234"}));
                        }
                        Some("CARD_ABSENT" | "CARD_ERROR" | "STORAGE_ERROR" | "INTERNAL_ERROR") => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        _ => panic!("{key}: unexpected answer {r}"),
                    },
                    None => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    })
}

/// Lets fsed sign what is left: presents the PIN, closes the open lot, waits for every lot signed.
fn sign_the_rest(socket: &Path) {
    let mut client = Client {
        path: socket.to_path_buf(),
        conn: None,
        next: 0,
    };
    common::wait_for("the PIN", Duration::from_secs(30), || {
        client
            .call("cards.verify_pin", json!({"pin": "1234"}))
            .filter(|r| r.get("result").is_some())
    });
    client.call("lots.close", json!({}));
    common::wait_for("every lot signed", Duration::from_secs(120), || {
        let stats = client.call("queue.stats", json!({}))?;
        let sheets = stats["result"]["sheets"].as_object()?;
        let waiting = ["accepted", "in_lot"]
            .iter()
            .filter_map(|s| sheets.get(*s))
            .filter_map(Value::as_u64)
            .sum::<u64>();
        (waiting == 0).then_some(())
    });
}

/// The database, read directly: every accepted key has exactly one sheet, every sheet is in
/// exactly one signed lot whose signature and root verify, and no lot was signed twice.
fn check_database(dir: &Path, accepted: &HashMap<String, i64>, control: &Path) {
    // The database, read directly.
    let q = fse_queue::Queue::open(&dir.join("fsed.db")).unwrap();
    let mut all = Vec::new();
    let mut after = fse_queue::SheetId(0);
    loop {
        let page = q.list_sheets(None, 1000, after).unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        all.extend(page);
    }
    assert_eq!(all.len() as u64, SHEETS, "sheets stored");
    let ids: HashSet<i64> = accepted.values().copied().collect();
    assert_eq!(ids.len() as u64, SHEETS, "one sheet per accepted key");
    assert!(all.iter().all(|s| ids.contains(&s.id.get())));
    let numbers: HashSet<u64> = all.iter().map(|s| s.number).collect();
    assert_eq!(numbers.len(), all.len(), "sheet numbers unique");

    // Every sheet in exactly one signed lot, whose signature and root verify.
    let lots = q.list_lots(100_000).unwrap();
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for lot in &lots {
        let der = lot
            .signed_der
            .as_ref()
            .unwrap_or_else(|| panic!("lot {} unsigned", lot.id));
        let signed = fse_formats::lot::SignedLot::from_der(der).unwrap();
        signed.verify().unwrap();
        for e in &signed.entries {
            *seen.entry(e.sheet.clone()).or_default() += 1;
        }
    }
    for s in &all {
        assert_eq!(
            seen.get(&s.der),
            Some(&1),
            "sheet {} in exactly one lot",
            s.id
        );
        assert!(s.lot_id.is_some());
    }
    assert_eq!(seen.len(), all.len());

    // No lot signed twice: one lot.signed event each; the card signed at most once per lot
    // plus once per kill that fell between a signature and its commit.
    let events = q.events_since(0, 10_000_000).unwrap();
    let mut signed_events: HashMap<String, usize> = HashMap::new();
    for e in events.iter().filter(|e| e.kind == "lot.signed") {
        *signed_events.entry(e.subject.clone()).or_default() += 1;
    }
    assert_eq!(signed_events.len(), lots.len());
    assert!(
        signed_events.values().all(|n| *n == 1),
        "a lot signed twice"
    );
    let stats = order(control, &["stats", "--slot", "cps"]);
    let signatures = stats["signatures"].as_u64().unwrap();
    assert!(
        signatures >= lots.len() as u64 && signatures <= (lots.len() + KILLS) as u64,
        "{signatures} card signatures for {} lots and {KILLS} kills",
        lots.len()
    );
    eprintln!(
        "crash test: {SHEETS} sheets, {KILLS} kills, {} lots, {signatures} card signatures",
        lots.len()
    );
}
