//! `fsectl`: the command line over fsed's socket API.
//! Exit codes: 0 success, 1 the daemon answered an error, 2 usage, 3 the daemon is unreachable.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use zeroize::Zeroize;

/// fsectl — talk to fsed.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// API socket of fsed.
    #[arg(long, env = "FSED_SOCKET", default_value = "/run/fsed/fsed.sock")]
    socket: PathBuf,
    /// Print raw JSON results.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Version, cards present and queue counts.
    Status,
    /// Queue counts and lots.
    Queue,
    /// Care sheets.
    #[command(subcommand)]
    Fse(FseCmd),
    /// Present the CPS PIN, read from standard input (never from the command line).
    Pin {
        /// Serial of the CPS when several are present.
        #[arg(long)]
        cps_serial: Option<String>,
    },
    /// Close open lots now.
    CloseLots,
    /// Call any method with JSON parameters.
    Call {
        /// Method name.
        method: String,
        /// Parameters, as JSON.
        params: Option<String>,
    },
}

#[derive(Subcommand)]
enum FseCmd {
    /// Create a care sheet for one act.
    Create {
        /// Act code (e.g. G).
        #[arg(long, default_value = "G")]
        code: String,
        /// Coefficient in hundredths.
        #[arg(long, default_value_t = 100)]
        coefficient: u32,
        /// Date of care YYYYMMDD (default today).
        #[arg(long)]
        date: Option<String>,
        /// Beneficiary index on the Vitale card.
        #[arg(long, default_value_t = 0)]
        beneficiary: usize,
        /// Situation index on the CPS.
        #[arg(long, default_value_t = 0)]
        situation: usize,
        /// Idempotency key.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Show one sheet.
    Get {
        /// Sheet id.
        id: i64,
    },
    /// List sheets.
    List,
}

struct Client {
    stream: BufReader<UnixStream>,
    next: u64,
}

enum CallError {
    Unreachable(String),
    Remote(Value),
}

impl Client {
    fn connect(path: &PathBuf) -> Result<Client, CallError> {
        UnixStream::connect(path)
            .map(|s| Client {
                stream: BufReader::new(s),
                next: 1,
            })
            .map_err(|e| {
                CallError::Unreachable(format!("{}: {e} (is fsed running?)", path.display()))
            })
    }

    fn call(&mut self, method: &str, params: Value) -> Result<Value, CallError> {
        self.next += 1;
        let mut line = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params}),
        )
        .map_err(|e| CallError::Unreachable(e.to_string()))?;
        line.push(b'\n');
        let sent = self.stream.get_mut().write_all(&line);
        line.zeroize();
        sent.map_err(|e| CallError::Unreachable(e.to_string()))?;
        let mut reply = String::new();
        self.stream
            .read_line(&mut reply)
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let v: Value = serde_json::from_str(&reply)
            .map_err(|e| CallError::Unreachable(format!("bad reply: {e}")))?;
        match v.get("error") {
            Some(err) => Err(CallError::Remote(err.clone())),
            None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
        }
    }
}

fn money(cents: &Value) -> String {
    let c = cents.as_u64().unwrap_or(0);
    format!("{}.{:02} €", c / 100, c % 100)
}

fn print_status(version: &Value, cards: &Value, stats: &Value) {
    println!(
        "fsed {} (API {})",
        version["version"].as_str().unwrap_or("?"),
        version["api"]
    );
    println!("cards:");
    match cards.as_array() {
        Some(list) if !list.is_empty() => {
            for c in list {
                let who = if let Some(cps) = c.get("cps") {
                    format!(
                        "{} {} ({})",
                        cps["holder"]["given_name"].as_str().unwrap_or(""),
                        cps["holder"]["surname"].as_str().unwrap_or(""),
                        if c["pin_verified"].as_bool() == Some(true) {
                            "PIN verified"
                        } else {
                            "PIN not verified"
                        }
                    )
                } else if let Some(v) = c.get("vitale") {
                    format!(
                        "{} beneficiaries",
                        v["beneficiaries"].as_array().map_or(0, Vec::len)
                    )
                } else {
                    String::new()
                };
                println!(
                    "  {:<28} {:<7} {:<10} {}",
                    c["reader"].as_str().unwrap_or(""),
                    c["kind"].as_str().unwrap_or(""),
                    c["serial"].as_str().unwrap_or("-"),
                    who
                );
            }
        }
        _ => println!("  (none)"),
    }
    print_stats(stats);
}

fn print_stats(stats: &Value) {
    for kind in ["sheets", "lots"] {
        let counts = stats[kind]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        println!(
            "{kind}: {}",
            if counts.is_empty() {
                "none".into()
            } else {
                counts
            }
        );
    }
}

fn run(cli: Cli) -> Result<(), CallError> {
    let mut c = Client::connect(&cli.socket)?;
    let out = |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    match cli.command {
        Cmd::Status => {
            let (v, cards, stats) = (
                c.call("system.version", json!({}))?,
                c.call("cards.list", json!({}))?,
                c.call("queue.stats", json!({}))?,
            );
            if cli.json {
                out(&json!({"version": v, "cards": cards, "queue": stats}));
            } else {
                print_status(&v, &cards, &stats);
            }
        }
        Cmd::Queue => {
            let (stats, lots) = (
                c.call("queue.stats", json!({}))?,
                c.call("lots.list", json!({}))?,
            );
            if cli.json {
                out(&json!({"queue": stats, "lots": lots}));
            } else {
                print_stats(&stats);
                for l in lots.as_array().into_iter().flatten() {
                    println!(
                        "  lot {:<24} {:<13} {:>5} sheets  to {}",
                        l["id"].as_str().unwrap_or(""),
                        l["state"].as_str().unwrap_or(""),
                        l["sheet_count"],
                        l["destination"].as_str().unwrap_or("")
                    );
                }
            }
        }
        Cmd::Fse(FseCmd::Create {
            code,
            coefficient,
            date,
            beneficiary,
            situation,
            idempotency_key,
        }) => {
            let mut act = json!({"code": code, "coefficient": coefficient});
            if let Some(d) = date {
                act["date"] = json!(d);
            }
            let mut params =
                json!({"act": act, "beneficiary": beneficiary, "situation": situation});
            if let Some(k) = idempotency_key {
                params["idempotency_key"] = json!(k);
            }
            let r = c.call("fse.create", params)?;
            if cli.json {
                out(&r);
            } else {
                let a = &r["sheet"]["amounts"];
                println!(
                    "sheet {} (no. {}) {}: total {}, AMO {}, participation {}, patient {}",
                    r["id"],
                    r["number"],
                    r["state"].as_str().unwrap_or(""),
                    money(&a["total_cents"]),
                    money(&a["amo_cents"]),
                    money(&a["pf_cents"]),
                    money(&a["patient_cents"])
                );
            }
        }
        Cmd::Fse(FseCmd::Get { id }) => out(&c.call("fse.get", json!({"id": id}))?),
        Cmd::Fse(FseCmd::List) => {
            let rows = c.call("fse.list", json!({}))?;
            if cli.json {
                out(&rows);
            } else {
                for r in rows.as_array().into_iter().flatten() {
                    println!(
                        "{:>6} no. {:<6} {:<13} {}",
                        r["id"],
                        r["number"],
                        r["state"].as_str().unwrap_or(""),
                        r["lot_id"].as_str().unwrap_or("-")
                    );
                }
            }
        }
        Cmd::Pin { cps_serial } => {
            let mut pin = String::new();
            std::io::stdin()
                .read_line(&mut pin)
                .map_err(|e| CallError::Unreachable(e.to_string()))?;
            let trimmed = pin.trim().to_string();
            pin.zeroize();
            let mut params = json!({"pin": trimmed});
            if let Some(s) = cps_serial {
                params["cps_serial"] = json!(s);
            }
            let r = c.call("cards.verify_pin", params);
            println!(
                "{}",
                if r.is_ok() {
                    "PIN verified"
                } else {
                    "PIN refused"
                }
            );
            r?;
        }
        Cmd::CloseLots => out(&c.call("lots.close", json!({}))?),
        Cmd::Call { method, params } => {
            let p = match params {
                Some(text) => serde_json::from_str(&text).map_err(|e| {
                    CallError::Remote(json!({"message": format!("params are not JSON: {e}")}))
                })?,
                None => json!({}),
            };
            out(&c.call(&method, p)?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CallError::Unreachable(m)) => {
            eprintln!("fsectl: {m}");
            ExitCode::from(3)
        }
        Err(CallError::Remote(e)) => {
            let field = e["data"]["field"]
                .as_str()
                .map(|f| format!(" [{f}]"))
                .unwrap_or_default();
            eprintln!(
                "fsectl: {}{field}",
                e["message"].as_str().unwrap_or("error")
            );
            ExitCode::from(1)
        }
    }
}
