//! `fsectl`: the command line over fsed's socket API. Every method has a command; results print
//! as tables for people, or as the method's JSON result with `--json`.
//!
//! Exit codes: 0 success; 1 fsed answered an error; 2 usage; 3 fsed is unreachable;
//! 4 `doctor` found a warning; 5 `doctor` found a failure; 6 `transmit --wait` timed out with
//! sheets still unsent; 7 `verify` found damaged rows.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser, Subcommand};
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// fsectl — drive and inspect fsed.
#[derive(Parser)]
// Named after the package fsectl was first built in: `fsectl --version` says `fsed X.Y.Z`,
// the version of fsed it comes with.
#[command(name = "fsed", version)]
struct Cli {
    /// API socket of fsed.
    #[arg(long, env = "FSED_SOCKET", default_value = "/run/fsed/fsed.sock")]
    socket: PathBuf,
    /// Print the JSON results instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Version, cards present and queue counts.
    Status,
    /// fsed's version (`system.version`).
    Version,
    /// Checks what fsed depends on and says how to fix what is wrong (`system.doctor`). When
    /// fsed does not answer, compares its database with the database's high-water mark
    /// (read-only) and says what committed data is missing, if any, and how to restore it.
    Doctor {
        /// Also read the whole database: the full integrity check (not the quick one) and
        /// every stored row's checksum, lot signature and Merkle root (as `verify`).
        #[arg(long)]
        thorough: bool,
        /// fsed's database, looked at when fsed does not answer.
        #[arg(long, default_value = "/var/lib/fsed/fsed.db")]
        database: PathBuf,
    },
    /// Checks every stored sheet's checksum, every lot's signature and Merkle root against
    /// its sheets, every DRE lot (`store.verify`); names each damaged row by id (exit 7
    /// when any).
    Verify,
    /// Copies fsed's database while it runs to FILE (`queue.backup`: SQLite's online backup,
    /// checked by `PRAGMA integrity_check`, mode 0600, put in place atomically). fsed writes
    /// FILE itself: under the systemd unit, only under /var/lib/fsed. `fsed restore FILE`
    /// puts it back.
    Backup {
        /// The copy to make (a relative path is taken from the current directory).
        file: PathBuf,
    },
    /// Cards in the readers and their PINs.
    #[command(subcommand)]
    Cards(CardsCmd),
    /// The Vitale card.
    #[command(subcommand)]
    Vitale(VitaleCmd),
    /// Care sheets.
    #[command(subcommand)]
    Fse(FseCmd),
    /// Lots.
    #[command(subcommand)]
    Lots(LotsCmd),
    /// Sends what is queued now; with `--wait`, follows it with a progress bar until every
    /// sheet is sent (`transmit.now`).
    Transmit {
        /// Wait until nothing is left to send.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Acknowledgements (ARL) and payment returns (`returns.list`).
    Returns {
        /// Only those of this lot.
        #[arg(long)]
        lot: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// The queue.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Prints events as they happen (`events.subscribe`) until interrupted.
    Events {
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// Only this event (repeat for several; `lagged` always comes).
        #[arg(long = "only", value_name = "EVENT")]
        only: Vec<String>,
    },
    /// Prints a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Calls any method with JSON parameters.
    Call {
        /// Method name.
        method: String,
        /// Parameters, as JSON.
        params: Option<String>,
    },
}

#[derive(Subcommand)]
enum CardsCmd {
    /// The cards in the readers (`cards.list`).
    List,
    /// Presents the CPS PIN, read from standard input, never from the command line
    /// (`cards.verify_pin`).
    VerifyPin {
        /// Serial of the CPS when several are present.
        #[arg(long)]
        cps_serial: Option<String>,
    },
    /// PIN state and tries left (`cards.pin_status`).
    PinStatus {
        /// Serial of the CPS when several are present.
        #[arg(long)]
        cps_serial: Option<String>,
    },
    /// Changes the CPS PIN: the old PIN then the new one, one a line on standard input
    /// (`cards.change_pin`).
    ChangePin {
        /// Serial of the CPS when several are present.
        #[arg(long)]
        cps_serial: Option<String>,
    },
    /// Unblocks the CPS PIN: the PUK then the new PIN, one a line on standard input
    /// (`cards.unblock_pin`).
    UnblockPin {
        /// Serial of the CPS when several are present.
        #[arg(long)]
        cps_serial: Option<String>,
    },
}

#[derive(Subcommand)]
enum VitaleCmd {
    /// The Vitale card's contents and its certificate check (`vitale.read`).
    Read,
}

#[derive(Subcommand)]
enum FseCmd {
    /// Creates a care sheet for one act (`fse.create`).
    Create {
        /// Act code (e.g. G).
        #[arg(long, default_value = "G")]
        code: String,
        /// Coefficient in hundredths.
        #[arg(long, default_value_t = 100)]
        coefficient: u32,
        /// Date of care YYYY-MM-DD or YYYYMMDD (default today).
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
    /// Shows one sheet (`fse.get`).
    Get {
        /// Sheet id.
        id: i64,
    },
    /// Lists sheets (`fse.list`).
    List {
        /// Only sheets in this state.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Those after this id (paging).
        #[arg(long, default_value_t = 0)]
        after_id: i64,
    },
    /// Cancels a sheet not yet in a lot (`fse.cancel`).
    Cancel {
        /// Sheet id.
        id: i64,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Sends a rejected sheet again (`fse.resubmit`).
    Resubmit {
        /// Sheet id.
        id: i64,
    },
    /// The proof a signed sheet carries alone (`fse.proof`).
    Proof {
        /// Sheet id.
        id: i64,
    },
}

#[derive(Subcommand)]
enum LotsCmd {
    /// Lists lots (`lots.list`).
    List,
    /// Shows one lot (`lots.get`).
    Get {
        /// Lot id.
        id: String,
    },
    /// Closes open lots now (`lots.close`).
    Close,
}

#[derive(Subcommand)]
enum QueueCmd {
    /// Counts of sheets and lots per state, and of lots sent again for a missing ARL
    /// (`queue.stats`).
    Stats,
    /// Sheets near or past their sending deadline, and lots sent whose ARL has not come
    /// (`queue.alarms`).
    Alarms,
}

/// A call that did not give a result.
enum CallError {
    /// fsed could not be reached, or answered nonsense.
    Unreachable(String),
    /// fsed answered an error.
    Remote(Value),
    /// The command itself failed, with its exit code.
    Exit(String, u8),
}

struct Client {
    stream: BufReader<UnixStream>,
    next: u64,
}

impl Client {
    fn connect(path: &PathBuf) -> Result<Client, CallError> {
        UnixStream::connect(path)
            .map(|s| Client {
                stream: BufReader::new(s),
                next: 0,
            })
            .map_err(|e| {
                let hint = match e.kind() {
                    std::io::ErrorKind::PermissionDenied => {
                        "add this user to the group fsed, then log in again"
                    }
                    _ => "is fsed running? `systemctl status fsed`",
                };
                CallError::Unreachable(format!("{}: {e} ({hint})", path.display()))
            })
    }

    /// Sends one request. Its parameters may hold a PIN or a PUK: every string of the request
    /// and the line written are wiped once sent.
    fn send(&mut self, method: &str, params: Value) -> Result<u64, CallError> {
        self.next += 1;
        let mut request =
            json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params});
        let encoded = serde_json::to_vec(&request);
        fsed::api::scrub(&mut request);
        let mut line = Zeroizing::new(encoded.map_err(|e| CallError::Unreachable(e.to_string()))?);
        line.push(b'\n');
        self.stream
            .get_mut()
            .write_all(&line)
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        Ok(self.next)
    }

    fn read(&mut self) -> Result<Value, CallError> {
        let mut reply = String::new();
        match self.stream.read_line(&mut reply) {
            Ok(0) => Err(CallError::Unreachable("fsed closed the connection".into())),
            Ok(_) => serde_json::from_str(&reply)
                .map_err(|e| CallError::Unreachable(format!("unreadable reply: {e}"))),
            Err(e) => Err(CallError::Unreachable(e.to_string())),
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Result<Value, CallError> {
        let id = self.send(method, params)?;
        loop {
            let v = self.read()?;
            // Event notifications carry no id: not the answer.
            if v.get("id") != Some(&json!(id)) {
                continue;
            }
            return match v.get("error") {
                Some(err) => Err(CallError::Remote(err.clone())),
                None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
            };
        }
    }
}

/// Prints rows as a table with aligned columns.
fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row.clone());
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

/// A JSON value as a cell: strings bare, null as `-`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn money(cents: &Value) -> String {
    let c = cents.as_u64().unwrap_or(0);
    format!("{}.{:02} €", c / 100, c % 100)
}

fn pretty(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Reads one secret line from standard input, without echo handling (pipe or prompt).
fn secret_line(prompt: &str) -> Result<Zeroizing<String>, CallError> {
    if std::io::stdin().is_terminal() {
        eprint!("{prompt}: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CallError::Exit(format!("reading {prompt}: {e}"), 2))?;
    let trimmed = Zeroizing::new(line.trim().to_string());
    if trimmed.is_empty() {
        return Err(CallError::Exit(format!("no {prompt} on standard input"), 2));
    }
    Ok(trimmed)
}

fn with_serial(mut params: Value, cps_serial: Option<String>) -> Value {
    if let Some(s) = cps_serial {
        params["cps_serial"] = json!(s);
    }
    params
}

fn print_cards(cards: &Value) {
    let rows: Vec<Vec<String>> = cards
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let who = if let Some(cps) = c.get("cps") {
                format!(
                    "{} {}",
                    cell(&cps["holder"]["given_name"]),
                    cell(&cps["holder"]["surname"])
                )
            } else if let Some(v) = c.get("vitale") {
                format!(
                    "{} beneficiaries",
                    v["beneficiaries"].as_array().map_or(0, Vec::len)
                )
            } else {
                cell(&c["error"])
            };
            let pin = if c["kind"] == "cps" {
                if c["pin_verified"] == json!(true) {
                    "verified"
                } else {
                    "not verified"
                }
            } else {
                "-"
            };
            vec![
                cell(&c["reader"]),
                cell(&c["kind"]),
                cell(&c["serial"]),
                who,
                pin.to_string(),
                cell(&c["certificate"]["status"]),
                cell(&c["certificate"]["not_after"]),
            ]
        })
        .collect();
    table(
        &[
            "reader",
            "kind",
            "serial",
            "holder",
            "pin",
            "certificate",
            "valid until",
        ],
        &rows,
    );
}

fn print_stats(stats: &Value) {
    for kind in ["sheets", "lots", "resends", "dead_letters"] {
        let counts: Vec<String> = stats[kind]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.as_u64() != Some(0))
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "{kind}: {}",
            if counts.is_empty() {
                "none".into()
            } else {
                counts.join(", ")
            }
        );
    }
}

fn print_sheet(r: &Value) {
    let a = &r["sheet"]["amounts"];
    println!(
        "sheet {} (no. {}) {}: total {}, AMO {}, participation {}, patient {}",
        r["id"],
        r["number"],
        cell(&r["state"]),
        money(&a["total_cents"]),
        money(&a["amo_cents"]),
        money(&a["pf_cents"]),
        money(&a["patient_cents"])
    );
}

/// Sheets not sent yet, from `queue.stats`.
fn unsent(stats: &Value) -> u64 {
    ["accepted", "in_lot", "signed"]
        .iter()
        .map(|s| stats["sheets"][s].as_u64().unwrap_or(0))
        .sum()
}

fn transmit(c: &mut Client, json_out: bool, wait: bool, timeout: u64) -> Result<(), CallError> {
    // Everything queued goes: open lots close, then lots are sent.
    c.call("lots.close", json!({}))?;
    let r = c.call("transmit.now", json!({}))?;
    if !wait {
        if json_out {
            pretty(&r);
        } else {
            println!("sending asked");
        }
        return Ok(());
    }
    let start = unsent(&c.call("queue.stats", json!({}))?);
    let bar = if json_out || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(start)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} sending [{bar:40}] {pos}/{len} sheets ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut total = start;
    let (mut last, mut moved) = (start, Instant::now());
    let left = loop {
        let left = unsent(&c.call("queue.stats", json!({}))?);
        // Sheets made meanwhile join the backlog being sent.
        if left > total {
            total = left;
            bar.set_length(total);
        }
        bar.set_position(total - left);
        if left == 0 || Instant::now() >= deadline {
            break left;
        }
        if left != last {
            (last, moved) = (left, Instant::now());
        } else if moved.elapsed() > Duration::from_secs(2) {
            // Stalled: sheets made since the start sit in an open lot; close it and nudge.
            c.call("lots.close", json!({}))?;
            c.call("transmit.now", json!({}))?;
            moved = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    bar.finish_and_clear();
    if json_out {
        pretty(&json!({"sent": total - left, "unsent": left}));
    } else {
        println!("{} sheet(s) sent, {left} left", total - left);
    }
    if left > 0 {
        return Err(CallError::Exit(
            format!("{left} sheet(s) still unsent after {timeout} s: see `fsectl doctor`"),
            6,
        ));
    }
    Ok(())
}

fn doctor(c: &mut Client, json_out: bool, thorough: bool) -> Result<(), CallError> {
    let params = if thorough {
        json!({"thorough": true})
    } else {
        json!({})
    };
    let r = c.call("system.doctor", params)?;
    if json_out {
        pretty(&r);
    } else {
        for check in r["checks"].as_array().into_iter().flatten() {
            let mark = match check["status"].as_str() {
                Some("ok") => "ok  ",
                Some("warning") => "WARN",
                _ => "FAIL",
            };
            println!(
                "[{mark}] {:<12} {}",
                cell(&check["check"]),
                cell(&check["detail"])
            );
            if let Some(fix) = check["fix"].as_str() {
                println!("       {:<12} → {fix}", "");
            }
        }
    }
    match r["status"].as_str() {
        Some("ok") => Ok(()),
        Some("warning") => Err(CallError::Exit("warnings found".into(), 4)),
        _ => Err(CallError::Exit("problems found".into(), 5)),
    }
}

/// `store.verify`: what was checked, each damaged row by kind and id; exit 7 when any.
fn verify(c: &mut Client, json_out: bool) -> Result<(), CallError> {
    let r = c.call("store.verify", json!({}))?;
    let damaged = r["damaged"].as_array().cloned().unwrap_or_default();
    if json_out {
        pretty(&r);
    } else {
        println!(
            "{} sheet(s), {} lot(s), {} DRE lot(s) checked; {} damaged",
            r["sheets"],
            r["lots"],
            r["dre_lots"],
            damaged.len()
        );
        let rows: Vec<Vec<String>> = damaged
            .iter()
            .map(|d| vec![cell(&d["kind"]), cell(&d["id"]), cell(&d["reason"])])
            .collect();
        if !rows.is_empty() {
            table(&["kind", "id", "reason"], &rows);
        }
    }
    if damaged.is_empty() {
        Ok(())
    } else {
        Err(CallError::Exit(
            format!(
                "{} damaged row(s): restore the database from a backup",
                damaged.len()
            ),
            7,
        ))
    }
}

/// A listing's state cell: the state, or `DAMAGED (why)` for a row fsed does not serve.
fn state_cell(r: &Value) -> String {
    match r["damaged"].as_str() {
        Some(why) => format!("DAMAGED ({why})"),
        None => cell(&r["state"]),
    }
}

/// `fsectl doctor` when fsed does not answer: its database compared with the database's
/// high-water mark, read-only (exit 5 when committed data is missing or the file is unusable).
fn offline_doctor(
    unreachable: &str,
    db: &std::path::Path,
    json_out: bool,
) -> Result<(), CallError> {
    let (status, detail, fix) = match fsed::mark::check(db) {
        Ok(c) => match c.database {
            Some(hw) => ("ok", format!("database {} as far as its high-water mark (events up to {})", db.display(), hw.last_event), None),
            None => ("ok", format!("no database at {} yet", db.display()), None),
        },
        Err(fsed::mark::CheckError::Lost(lost)) => (
            "failure",
            format!("committed data is missing from {}: {}", db.display(), lost.missing.join("; ")),
            Some("with fsed stopped, restore the latest backup (`fsed restore FILE`), or accept the loss (`fsed accept-loss`)"),
        ),
        Err(fsed::mark::CheckError::Queue(e @ (fse_queue::QueueError::Corrupt { .. } | fse_queue::QueueError::SchemaTooNew { .. }))) => (
            "failure",
            e.to_string(),
            Some("with fsed stopped, restore the latest backup (`fsed restore FILE`)"),
        ),
        Err(e) => ("warning", format!("database not checked: {e}"), Some("run `fsectl doctor` as root, or `fsed check-config` as fsed's user")),
    };
    if json_out {
        pretty(&json!({
            "status": status,
            "checks": [
                {"check": "fsed", "status": "failure", "detail": unreachable},
                {"check": "durability", "status": status, "detail": detail, "fix": fix},
            ],
        }));
    } else {
        println!("[FAIL] {:<12} {unreachable}", "fsed");
        let mark = match status {
            "ok" => "ok  ",
            "warning" => "WARN",
            _ => "FAIL",
        };
        println!("[{mark}] {:<12} {detail}", "durability");
        if let Some(fix) = fix {
            println!("       {:<12} → {fix}", "");
        }
    }
    Err(CallError::Exit("fsed does not answer".into(), 5))
}

fn run(cli: Cli) -> Result<(), CallError> {
    if let Cmd::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "fsectl", &mut std::io::stdout());
        return Ok(());
    }
    let j = cli.json;
    let mut c = match (Client::connect(&cli.socket), &cli.command) {
        (Ok(c), _) => c,
        (Err(CallError::Unreachable(m)), Cmd::Doctor { database, .. }) => {
            return offline_doctor(&m, database, j)
        }
        (Err(e), _) => return Err(e),
    };
    // Prints the result as JSON, or with `human` for people.
    let show = |r: Value, human: &dyn Fn(&Value)| {
        if j {
            pretty(&r);
        } else {
            human(&r);
        }
    };
    match cli.command {
        Cmd::Completions { .. } => {}
        Cmd::Status => {
            let (v, cards, stats) = (
                c.call("system.version", json!({}))?,
                c.call("cards.list", json!({}))?,
                c.call("queue.stats", json!({}))?,
            );
            show(
                json!({"version": v, "cards": cards, "queue": stats}),
                &|r| {
                    println!(
                        "fsed {} (API {})",
                        cell(&r["version"]["version"]),
                        r["version"]["api"]
                    );
                    print_cards(&r["cards"]);
                    print_stats(&r["queue"]);
                },
            );
        }
        Cmd::Version => show(c.call("system.version", json!({}))?, &|r| {
            println!("fsed {} (API {})", cell(&r["version"]), r["api"]);
        }),
        Cmd::Doctor { thorough, database } => match doctor(&mut c, j, thorough) {
            Err(CallError::Unreachable(m)) => offline_doctor(&m, &database, j)?,
            done => done?,
        },
        Cmd::Verify => verify(&mut c, j)?,
        Cmd::Backup { file } => {
            let path = std::path::absolute(&file)
                .map_err(|e| CallError::Exit(format!("{}: {e}", file.display()), 2))?;
            let r = c.call(
                "queue.backup",
                json!({ "path": path.display().to_string() }),
            )?;
            show(r, &|r| {
                println!(
                    "backup {} ({} bytes, integrity ok): events up to {}",
                    cell(&r["path"]),
                    r["bytes"],
                    r["last_event"]
                );
                print_stats(&json!({"sheets": r["sheets"], "lots": r["lots"]}));
            });
        }
        Cmd::Cards(CardsCmd::List) => show(c.call("cards.list", json!({}))?, &print_cards),
        Cmd::Cards(CardsCmd::VerifyPin { cps_serial }) => {
            let pin = secret_line("PIN")?;
            let r = c.call(
                "cards.verify_pin",
                with_serial(json!({"pin": pin.as_str()}), cps_serial),
            )?;
            show(r, &|_| println!("PIN verified"));
        }
        Cmd::Cards(CardsCmd::PinStatus { cps_serial }) => show(
            c.call("cards.pin_status", with_serial(json!({}), cps_serial))?,
            &|r| {
                if r["verified"] == json!(true) {
                    println!("PIN verified");
                } else if r["blocked"] == json!(true) {
                    println!("PIN blocked: unblock it with the PUK (fsectl cards unblock-pin)");
                } else {
                    println!("PIN not verified, {} tries left", cell(&r["tries_left"]));
                }
            },
        ),
        Cmd::Cards(CardsCmd::ChangePin { cps_serial }) => {
            let old = secret_line("current PIN")?;
            let new = secret_line("new PIN")?;
            let r = c.call(
                "cards.change_pin",
                with_serial(
                    json!({"old_pin": old.as_str(), "new_pin": new.as_str()}),
                    cps_serial,
                ),
            )?;
            show(r, &|_| println!("PIN changed"));
        }
        Cmd::Cards(CardsCmd::UnblockPin { cps_serial }) => {
            let puk = secret_line("PUK")?;
            let new = secret_line("new PIN")?;
            let r = c.call(
                "cards.unblock_pin",
                with_serial(
                    json!({"puk": puk.as_str(), "new_pin": new.as_str()}),
                    cps_serial,
                ),
            )?;
            show(r, &|_| println!("PIN unblocked"));
        }
        Cmd::Vitale(VitaleCmd::Read) => show(c.call("vitale.read", json!({}))?, &|r| {
            println!(
                "Vitale card {} — certificate {}",
                cell(&r["serial"]),
                cell(&r["certificate"]["status"])
            );
            let rows: Vec<Vec<String>> = r["beneficiaries"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, b)| {
                    vec![
                        i.to_string(),
                        format!("{} {}", cell(&b["given_name"]), cell(&b["surname"])),
                        cell(&b["birth_date"]),
                        cell(&b["organism"]),
                    ]
                })
                .collect();
            table(&["#", "beneficiary", "born", "organism"], &rows);
        }),
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
            show(c.call("fse.create", params)?, &print_sheet);
        }
        Cmd::Fse(FseCmd::Get { id }) => show(c.call("fse.get", json!({"id": id}))?, &|r| {
            print_sheet(r);
            println!(
                "lot {}{}",
                cell(&r["lot_id"]),
                r["reason"]
                    .as_str()
                    .map(|s| format!(", {s}"))
                    .unwrap_or_default()
            );
        }),
        Cmd::Fse(FseCmd::List {
            state,
            limit,
            after_id,
        }) => {
            let mut params = json!({"limit": limit, "after_id": after_id});
            if let Some(s) = state {
                params["state"] = json!(s);
            }
            show(c.call("fse.list", params)?, &|rows| {
                let rows: Vec<Vec<String>> = rows
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        vec![
                            cell(&r["id"]),
                            cell(&r["number"]),
                            state_cell(r),
                            cell(&r["destination"]),
                            cell(&r["lot_id"]),
                        ]
                    })
                    .collect();
                table(&["id", "number", "state", "destination", "lot"], &rows);
            });
        }
        Cmd::Fse(FseCmd::Cancel { id, reason }) => show(
            c.call("fse.cancel", json!({"id": id, "reason": reason}))?,
            &|r| println!("sheet {} {}", r["id"], cell(&r["state"])),
        ),
        Cmd::Fse(FseCmd::Resubmit { id }) => {
            show(c.call("fse.resubmit", json!({"id": id}))?, &print_sheet)
        }
        Cmd::Fse(FseCmd::Proof { id }) => show(c.call("fse.proof", json!({"id": id}))?, &pretty),
        Cmd::Lots(LotsCmd::List) => show(c.call("lots.list", json!({}))?, &|lots| {
            let rows: Vec<Vec<String>> = lots
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| {
                    vec![
                        cell(&l["id"]),
                        state_cell(l),
                        cell(&l["sheet_count"]),
                        cell(&l["destination"]),
                        cell(&l["closed_at"]),
                    ]
                })
                .collect();
            table(&["lot", "state", "sheets", "destination", "closed"], &rows);
        }),
        Cmd::Lots(LotsCmd::Get { id }) => show(c.call("lots.get", json!({"lot_id": id}))?, &pretty),
        Cmd::Lots(LotsCmd::Close) => show(c.call("lots.close", json!({}))?, &|_| {
            println!("open lots closing");
        }),
        Cmd::Transmit { wait, timeout } => transmit(&mut c, j, wait, timeout)?,
        Cmd::Returns { lot, limit } => {
            let mut params = json!({});
            if let Some(l) = lot {
                params["lot_id"] = json!(l);
            }
            if let Some(n) = limit {
                params["limit"] = json!(n);
            }
            show(c.call("returns.list", params)?, &|r| {
                let arls: Vec<Vec<String>> = r["arls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        vec![
                            cell(&a["lot_id"]),
                            cell(&a["status"]),
                            cell(&a["received_at"]),
                        ]
                    })
                    .collect();
                table(&["lot", "arl", "received"], &arls);
                let payments: Vec<Vec<String>> = r["payments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        vec![
                            cell(&p["lot_id"]),
                            cell(&p["sheet_id"]),
                            cell(&p["outcome"]),
                            p.get("amount_cents").map(money).unwrap_or("-".into()),
                        ]
                    })
                    .collect();
                println!();
                table(&["lot", "sheet", "payment", "amount"], &payments);
            });
        }
        Cmd::Queue(QueueCmd::Stats) => show(c.call("queue.stats", json!({}))?, &print_stats),
        Cmd::Queue(QueueCmd::Alarms) => show(c.call("queue.alarms", json!({}))?, &|alarms| {
            let all: Vec<&Value> = alarms.as_array().into_iter().flatten().collect();
            let rows: Vec<Vec<String>> = all
                .iter()
                .filter(|a| a["kind"] != "arl_missing")
                .map(|a| {
                    vec![
                        cell(&a["id"]),
                        cell(&a["number"]),
                        cell(&a["state"]),
                        cell(&a["deadline"]),
                    ]
                })
                .collect();
            table(&["sheet", "number", "state", "deadline"], &rows);
            let lots: Vec<Vec<String>> = all
                .iter()
                .filter(|a| a["kind"] == "arl_missing")
                .map(|a| {
                    vec![
                        cell(&a["lot_id"]),
                        cell(&a["destination"]),
                        cell(&a["sent_at"]),
                        cell(&a["resends"]),
                        if a["given_up"] == true {
                            "given up: ask the insurer".into()
                        } else {
                            "sent again by fsed".into()
                        },
                    ]
                })
                .collect();
            if !lots.is_empty() {
                println!();
                table(
                    &[
                        "lot without ARL",
                        "destination",
                        "last sent",
                        "resends",
                        "state",
                    ],
                    &lots,
                );
            }
        }),
        Cmd::Events { count, only } => {
            let params = if only.is_empty() {
                json!({})
            } else {
                json!({ "events": only })
            };
            c.call("events.subscribe", params)?;
            // On standard error, so `--json` output stays one event a line: a script (or a
            // test) may wait for this line before it makes what it watches for.
            eprintln!("fsectl: subscribed; events follow");
            let mut seen = 0;
            while count.is_none_or(|n| seen < n) {
                let v = c.read()?;
                if v["method"] != "event" {
                    continue;
                }
                seen += 1;
                if j {
                    println!("{}", v["params"]);
                } else {
                    let mut rest = v["params"].clone();
                    if let Some(o) = rest.as_object_mut() {
                        o.remove("at");
                        o.remove("event");
                    }
                    println!(
                        "{}  {:<18} {rest}",
                        cell(&v["params"]["at"]),
                        cell(&v["params"]["event"])
                    );
                }
                let _ = std::io::stdout().flush();
            }
        }
        Cmd::Call { method, params } => {
            let p = match params {
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| CallError::Exit(format!("params are not JSON: {e}"), 2))?,
                None => json!({}),
            };
            pretty(&c.call(&method, p)?);
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
        Err(CallError::Exit(m, code)) => {
            eprintln!("fsectl: {m}");
            ExitCode::from(code)
        }
        Err(CallError::Remote(e)) => {
            let field = e["data"]["field"]
                .as_str()
                .map(|f| format!(" [{f}]"))
                .unwrap_or_default();
            eprintln!("fsectl: {}{field}", cell(&e["message"]));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
#[path = "../../man/pages.rs"]
mod man_pages;

#[cfg(test)]
mod man_tests {
    use clap::CommandFactory;

    fn names_of(pages: &[(String, String)]) -> Vec<&str> {
        pages.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// daemon/man holds the pages of this very command line (see daemon/man/pages.rs).
    #[test]
    fn man_pages_are_current() {
        // The command is named fsed (`fsectl --version`); the binary is fsectl.
        let pages = super::man_pages::render(super::Cli::command().name("fsectl"), "1");
        // The command, its 15 subcommands (backup and verify among them) and the 17 of its
        // groups: cards (5), vitale (1), fse (6), lots (3), queue (2); 1 + 15 + 17 = 33.
        assert_eq!(pages.len(), 33);
        assert!(names_of(&pages).contains(&"fsectl-backup.1"));
        assert!(names_of(&pages).contains(&"fsectl-verify.1"));
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"fsectl-cards-verify-pin.1"), "{names:?}");
        let problems = super::man_pages::check(&pages, "fsectl", "1");
        assert!(
            problems.is_empty(),
            "{problems:?}: run FSED_WRITE_MAN_PAGES=1 cargo test -p fsed -p fsectl --bins man_pages"
        );
    }
}
