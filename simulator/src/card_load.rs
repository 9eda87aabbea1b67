//! `fse-sim card-load`: programs sharing one card. Each client is one connection to an fsed
//! (its Unix socket, or another fsed over mutual TLS with an enrolled identity) calling one
//! card method (by default `cards.pin_status`, which costs the card an exchange) as fast as
//! it is answered, for a given time. A `CARD_BUSY` answer is waited out (its
//! `retry_after_ms`, at most a second) and the request sent again; its wait counts in that
//! request's time. The report gives, per client, the requests answered, the `CARD_BUSY`
//! answers met, the errors, and the longest and mean time from wanting the card to its
//! answer; and in all, requests per second and each client's share of them.
//!
//! The fairness test runs one per workstation and adds the reports; the bench compares nine
//! clients with one.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use fsed_client::{Client, Error};
use serde::Serialize;
use serde_json::Value;

/// `fse-sim card-load` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct CardLoadArgs {
    /// fsed's API socket (when no `--host`).
    #[arg(long, env = "FSED_SOCKET", default_value = "/run/fsed/fsed.sock")]
    pub socket: PathBuf,
    /// Another fsed's network API (`host:port`), reached over mutual TLS with `--identity`.
    #[arg(long, requires = "identity")]
    pub host: Option<String>,
    /// The enrolled identity directory (`fsectl enroll --out`) for `--host`.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Clients (one connection and one thread each).
    #[arg(long, default_value_t = 3)]
    pub clients: usize,
    /// How long, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// The card method each client calls.
    #[arg(long, default_value = "cards.pin_status")]
    pub method: String,
    /// Its parameters (a JSON object).
    #[arg(long, default_value = "{}")]
    pub params: String,
    /// A name for this run's clients in the report (`<label>#<i>`).
    #[arg(long, default_value = "client")]
    pub label: String,
    /// Also write the report (JSON) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// What one client did.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ClientReport {
    /// `<label>#<i>`.
    pub client: String,
    /// Requests answered with a result.
    pub ops: u64,
    /// `CARD_BUSY` answers met (each waited out and sent again).
    pub busy: u64,
    /// Other errors (the client goes on).
    pub errors: u64,
    /// Longest time from wanting the card to its answer, in milliseconds.
    pub longest_wait_ms: f64,
    /// Mean of those times, in milliseconds.
    pub mean_ms: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct CardLoadReport {
    /// The method called.
    pub method: String,
    /// How long the clients ran, in seconds.
    pub secs: f64,
    /// Requests answered per second, all clients together.
    pub ops_per_sec: f64,
    /// The longest wait of any client, in milliseconds.
    pub longest_wait_ms: f64,
    /// Each client.
    pub clients: Vec<ClientReport>,
}

impl CardLoadReport {
    /// Several runs (one per workstation) as one: their clients together, their rates added.
    pub fn merge(reports: Vec<CardLoadReport>) -> Option<CardLoadReport> {
        let first = reports.first()?.clone();
        let mut all = CardLoadReport {
            clients: Vec::new(),
            ops_per_sec: 0.0,
            longest_wait_ms: 0.0,
            ..first
        };
        for r in reports {
            all.ops_per_sec += r.ops_per_sec;
            all.longest_wait_ms = all.longest_wait_ms.max(r.longest_wait_ms);
            all.secs = all.secs.max(r.secs);
            all.clients.extend(r.clients);
        }
        Some(all)
    }

    /// Each client's share of the requests answered, against an equal share (1.0 = equal).
    pub fn shares(&self) -> Vec<(String, f64)> {
        let total: u64 = self.clients.iter().map(|c| c.ops).sum();
        let n = self.clients.len().max(1) as f64;
        self.clients
            .iter()
            .map(|c| {
                let share = if total == 0 {
                    0.0
                } else {
                    c.ops as f64 / total as f64 * n
                };
                (c.client.clone(), share)
            })
            .collect()
    }
}

/// Why the run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CardLoadError {
    /// `--params` is not a JSON object.
    #[error("--params: {0}")]
    Params(String),
    /// A client could not connect.
    #[error("client {client}: {source}")]
    Connect {
        /// Which.
        client: usize,
        /// Why.
        source: Error,
    },
    /// The report could not be written.
    #[error("--json {}: {source}", path.display())]
    Write {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The longest a `CARD_BUSY`'s `retry_after_ms` is waited before sending again.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Runs the clients, each over a connection `connect` makes; returns the report.
pub fn run_with(
    args: &CardLoadArgs,
    connect: impl Fn(usize) -> Result<Client, Error>,
) -> Result<CardLoadReport, CardLoadError> {
    let params: Value =
        serde_json::from_str(&args.params).map_err(|e| CardLoadError::Params(e.to_string()))?;
    if !params.is_object() {
        return Err(CardLoadError::Params("not a JSON object".into()));
    }
    let mut clients = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        clients.push(connect(i).map_err(|source| CardLoadError::Connect { client: i, source })?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Every client starts at once.
    let start = Arc::new(Barrier::new(args.clients + 1));
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let (stop, start) = (Arc::clone(&stop), Arc::clone(&start));
            let (method, params) = (args.method.clone(), params.clone());
            let name = format!("{}#{i}", args.label);
            std::thread::spawn(move || one_client(client, &name, &method, &params, &start, &stop))
        })
        .collect();
    start.wait();
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.secs.max(0.0)));
    stop.store(true, Ordering::Relaxed);
    let reports: Vec<ClientReport> = threads.into_iter().filter_map(|t| t.join().ok()).collect();
    let secs = began.elapsed().as_secs_f64();
    let ops: u64 = reports.iter().map(|c| c.ops).sum();
    let report = CardLoadReport {
        method: args.method.clone(),
        secs,
        ops_per_sec: ops as f64 / secs.max(f64::EPSILON),
        longest_wait_ms: reports
            .iter()
            .map(|c| c.longest_wait_ms)
            .fold(0.0, f64::max),
        clients: reports,
    };
    if let Some(path) = &args.json {
        // A report is plain numbers and names: encoding it cannot fail.
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        std::fs::write(path, text).map_err(|source| CardLoadError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(report)
}

/// Runs the clients on fsed's socket `args.socket`, or on `args.host` over mutual TLS.
pub fn run(args: &CardLoadArgs) -> Result<CardLoadReport, CardLoadError> {
    match (&args.host, &args.identity) {
        (Some(host), Some(dir)) => {
            let identity =
                fsed_client::tls::Identity::load(dir).map_err(|e| CardLoadError::Connect {
                    client: 0,
                    source: e.into(),
                })?;
            run_with(args, |_| Client::connect_tls(host, &identity))
        }
        _ => run_with(args, |_| Client::connect(&args.socket)),
    }
}

/// One client's loop: the method called until `stop`, a `CARD_BUSY` waited out and sent again.
fn one_client(
    mut client: Client,
    name: &str,
    method: &str,
    params: &Value,
    start: &Barrier,
    stop: &AtomicBool,
) -> ClientReport {
    let mut r = ClientReport {
        client: name.to_string(),
        ops: 0,
        busy: 0,
        errors: 0,
        longest_wait_ms: 0.0,
        mean_ms: 0.0,
    };
    let mut total = Duration::ZERO;
    start.wait();
    'requests: while !stop.load(Ordering::Relaxed) {
        let wanted = Instant::now();
        loop {
            match client.call(method, params.clone()) {
                Ok(_) => break,
                Err(Error::Peer(e)) if e.code == fse_formats::api::CARD_BUSY => {
                    r.busy += 1;
                    let after = e
                        .data
                        .as_ref()
                        .and_then(|d| d.get("retry_after_ms"))
                        .and_then(Value::as_u64)
                        .unwrap_or(10);
                    std::thread::sleep(Duration::from_millis(after).min(MAX_BACKOFF));
                    if stop.load(Ordering::Relaxed) {
                        break 'requests;
                    }
                }
                Err(Error::Peer(_)) => {
                    r.errors += 1;
                    continue 'requests;
                }
                // The connection is gone: this client is done.
                Err(_) => {
                    r.errors += 1;
                    break 'requests;
                }
            }
        }
        let took = wanted.elapsed();
        total += took;
        r.ops += 1;
        r.longest_wait_ms = r.longest_wait_ms.max(took.as_secs_f64() * 1e3);
    }
    if r.ops > 0 {
        r.mean_ms = total.as_secs_f64() * 1e3 / r.ops as f64;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str, ops: u64, longest: f64) -> ClientReport {
        ClientReport {
            client: name.into(),
            ops,
            busy: 0,
            errors: 0,
            longest_wait_ms: longest,
            mean_ms: 1.0,
        }
    }

    #[test]
    fn reports_of_workstations_add_up_and_give_each_clients_share() {
        let a = CardLoadReport {
            method: "cards.pin_status".into(),
            secs: 60.0,
            ops_per_sec: 10.0,
            longest_wait_ms: 30.0,
            clients: vec![client("a#0", 300, 30.0), client("a#1", 300, 20.0)],
        };
        let b = CardLoadReport {
            secs: 61.0,
            ops_per_sec: 5.0,
            longest_wait_ms: 45.0,
            clients: vec![client("b#0", 600, 45.0)],
            ..a.clone()
        };
        let all = CardLoadReport::merge(vec![a, b]).unwrap();
        assert_eq!(all.clients.len(), 3);
        assert_eq!(all.ops_per_sec, 15.0);
        assert_eq!(all.longest_wait_ms, 45.0);
        assert_eq!(all.secs, 61.0);
        // 1,200 requests over 3 clients: 400 each would be equal; 300/400 = 0.75, 600/400 = 1.5.
        let shares = all.shares();
        assert_eq!(shares[0], ("a#0".to_string(), 0.75));
        assert_eq!(shares[2], ("b#0".to_string(), 1.5));
        assert!(CardLoadReport::merge(Vec::new()).is_none());
    }

    #[test]
    fn params_that_are_not_an_object_are_refused_before_connecting() {
        let args = CardLoadArgs {
            socket: "/nonexistent".into(),
            host: None,
            identity: None,
            clients: 1,
            secs: 0.0,
            method: "cards.pin_status".into(),
            params: "[1]".into(),
            label: "t".into(),
            json: None,
        };
        let e = run(&args).unwrap_err();
        assert!(matches!(e, CardLoadError::Params(_)), "{e}");
    }
}
