//! `fse-sim demo`: the main job on embedded defaults. It starts `fsed` (the
//! binary next to `fse-sim`) with its virtual reader and a spool transport,
//! shows it the default simulated CPS and Vitale card over the vpcd
//! protocol, answers its lots as the insurer from the spool, bills a sample
//! batch of sheets as practice software would over the socket, and prints
//! what happened to them. No pcscd and no broker are needed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use fsed_client::Client;
use serde_json::{json, Value};

use crate::card::CardStats;
use crate::cards_cmd;
use crate::insurer::Insurer;
use crate::vpcd::Latency;

/// `fse-sim demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Number of sheets to bill.
    #[arg(long, default_value_t = 25)]
    pub sheets: u32,
    /// Sheets per lot.
    #[arg(long, default_value_t = 10)]
    pub lot_size: u32,
    /// Keep the state directory here (default: a fresh temporary one).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Cards answer at once instead of at a real card's pace (20 ms per APDU, 150 ms per signature).
    #[arg(long)]
    pub no_latency: bool,
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Something to report, plainly.
    #[error("{0}")]
    Failed(String),
}

fn fail(msg: impl Into<String>) -> DemoError {
    DemoError::Failed(msg.into())
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A call to fsed over its socket; a failure is one of the demo's, named by the method.
fn call(c: &mut Client, method: &str, params: Value) -> Result<Value, DemoError> {
    c.call(method, params).map_err(|e| match e {
        fsed_client::Error::Peer(p) => fail(format!("{method}: {}", p.message)),
        fsed_client::Error::Unreadable { reason } => fail(format!("bad reply: {reason}")),
        other => fail(format!("socket: {other}")),
    })
}

/// A slot of fsed's virtual reader: a Unix socket in the state directory (a TCP port picked
/// free and let go could be taken before fsed binds it).
fn slot(state_dir: &std::path::Path, name: &str) -> String {
    format!(
        "{}{}",
        fse_formats::vpcd::UNIX_PREFIX,
        state_dir.join(name).display()
    )
}

fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>, DemoError>,
) -> Result<T, DemoError> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > end {
            return Err(fail(format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fsed_binary() -> Result<PathBuf, DemoError> {
    let me = std::env::current_exe().map_err(|e| fail(e.to_string()))?;
    let p = me.with_file_name("fsed");
    if p.exists() {
        Ok(p)
    } else {
        Err(fail(format!(
            "{} not found: build the workspace first (cargo build --workspace --bins)",
            p.display()
        )))
    }
}

/// Counts printed at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSummary {
    /// Sheets accepted by fsed.
    pub created: u64,
    /// Lots signed by the CPS.
    pub lots_signed: u64,
    /// Lots the insurer received.
    pub transmitted: u64,
    /// Lots acknowledged by the insurer.
    pub acknowledged: u64,
    /// Sheets acknowledged.
    pub sheets_acknowledged: u64,
    /// Signatures the simulated CPS made (one per lot).
    pub cps_signatures: u64,
}

fn count(stats: &Value, kind: &str, states: &[&str]) -> u64 {
    states
        .iter()
        .map(|s| stats[kind][*s].as_u64().unwrap_or(0))
        .sum()
}

/// Where the demo keeps things: its state directory, fsed's socket, the trust directory and
/// the two slots of fsed's virtual reader.
struct Paths {
    state_dir: PathBuf,
    socket: PathBuf,
    trust_dir: PathBuf,
    cps_addr: String,
    vitale_addr: String,
}

/// Runs the demo (blocking; starts its own runtime for the simulators).
pub fn run(args: DemoArgs) -> Result<DemoSummary, DemoError> {
    let paths = prepare(&args)?;
    let daemon = start_fsed(&args, &paths)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The insurer checks every lot's CPS certificate against the same test PKI.
    let trust = crate::insurer::load_trust(&paths.trust_dir).map_err(|e| fail(e.to_string()))?;
    let insurer = Arc::new(Mutex::new(Insurer::new("017510001").with_trust(trust)));
    let (outbox, inbox) = (
        paths.state_dir.join("spool/outbox"),
        paths.state_dir.join("spool/inbox"),
    );
    rt.spawn(crate::insurer::run_spool(
        outbox,
        inbox,
        Arc::clone(&insurer),
        stop_rx,
    ));
    let cards = rt.block_on(async {
        cards_cmd::start(
            paths.cps_addr.clone(),
            paths.vitale_addr.clone(),
            if args.no_latency {
                Latency::NONE
            } else {
                Latency::REAL_CARD
            },
        )
    });
    let cps_stats = Arc::clone(&cards.cps_stats);
    let mut daemon = daemon;
    let mut c = wait_until("fsed's socket", Duration::from_secs(20), || {
        if let Ok(Some(status)) = daemon.0.try_wait() {
            return Err(fail(format!("fsed exited early ({status})")));
        }
        Ok(Client::connect(&paths.socket).ok())
    })?;
    let (created, stats) = bill(&mut c, &args)?;
    let _ = stop_tx.send(true);
    rt.block_on(cards.stop());
    drop(daemon);
    drop(rt);
    let received = insurer.lock().unwrap_or_else(|p| p.into_inner()).report();
    Ok(DemoSummary {
        created,
        lots_signed: count(
            &stats,
            "lots",
            &["signed", "sent", "acknowledged", "rejected"],
        ),
        transmitted: received.received,
        acknowledged: count(&stats, "lots", &["acknowledged"]),
        sheets_acknowledged: count(&stats, "sheets", &["acknowledged"]),
        cps_signatures: CardStats::get(&cps_stats.signatures),
    })
}

/// Makes the state directory and writes the test PKI into it: fsed checks the simulated
/// cards' certificates against it, as it would real ones.
fn prepare(args: &DemoArgs) -> Result<Paths, DemoError> {
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("fsed-demo-{}", std::process::id())));
    std::fs::create_dir_all(&state_dir)
        .map_err(|e| fail(format!("{}: {e}", state_dir.display())))?;
    let socket = state_dir.join("fsed.sock");
    let (cps_addr, vitale_addr) = (
        slot(&state_dir, "cps.vpcd"),
        slot(&state_dir, "vitale.vpcd"),
    );
    println!("fsed demo: state in {}", state_dir.display());
    // The test PKI: fsed checks the simulated cards' certificates against it, as it would real ones.
    let trust_dir = state_dir.join("trust");
    crate::pki::TestPki::new()
        .and_then(|pki| pki.write(&trust_dir, time::OffsetDateTime::now_utc()))
        .map_err(|e| fail(format!("test PKI: {e}")))?;
    Ok(Paths {
        state_dir,
        socket,
        trust_dir,
        cps_addr,
        vitale_addr,
    })
}

/// Starts fsed on its embedded defaults, with the virtual reader and the spool transport.
fn start_fsed(args: &DemoArgs, paths: &Paths) -> Result<Daemon, DemoError> {
    Ok(Daemon(
        Command::new(fsed_binary()?)
            .args([
                "--config",
                "/dev/null",
                "--cards",
                "virtual",
                "--transport",
                "spool",
            ])
            .arg("--state-dir")
            .arg(&paths.state_dir)
            .arg("--socket")
            .arg(&paths.socket)
            .arg("--trust-dir")
            .arg(&paths.trust_dir)
            .arg("--virtual-slot")
            .arg(&paths.cps_addr)
            .arg("--virtual-slot")
            .arg(&paths.vitale_addr)
            .args([
                "--lot-max-sheets",
                &args.lot_size.to_string(),
                "--lot-max-age-secs",
                "3600",
            ])
            .env(
                "FSED_LOG",
                std::env::var("FSED_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot start fsed: {e}")))?,
    ))
}

/// Bills as practice software would, once both cards are seen: unlocks the CPS, creates
/// the sheets, closes the lot and waits for the insurer's answers. Returns the sheets
/// created and the queue's last statistics.
fn bill(c: &mut Client, args: &DemoArgs) -> Result<(u64, Value), DemoError> {
    wait_until(
        "both simulated cards in fsed's virtual reader",
        Duration::from_secs(20),
        || {
            let list = call(c, "cards.list", json!({}))?;
            let kinds: Vec<&str> = list
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["kind"].as_str()).collect())
                .unwrap_or_default();
            Ok((kinds.contains(&"cps") && kinds.contains(&"vitale")).then_some(()))
        },
    )?;
    call(c, "cards.verify_pin", json!({"pin": "1234"}))?;
    println!("CPS unlocked; billing {} consultations", args.sheets);
    let mut created = 0;
    for i in 0..args.sheets {
        let r = call(
            c,
            "fse.create",
            json!({"act": {"code": "G"}, "beneficiary": i % 2, "idempotency_key": format!("demo-{i}")}),
        )?;
        if r["state"] == json!("accepted") {
            created += 1;
        }
    }
    call(c, "lots.close", json!({}))?;
    let stats = wait_until(
        "the insurer's acknowledgements",
        Duration::from_secs(60),
        || {
            let s = call(c, "queue.stats", json!({}))?;
            let open = count(&s, "lots", &["closed", "signed", "sent"])
                + count(&s, "sheets", &["accepted", "in_lot"]);
            Ok(
                (open == 0 && count(&s, "sheets", &["acknowledged", "rejected"]) == created)
                    .then_some(s),
            )
        },
    )?;
    Ok((created, stats))
}
