//! `fse-sim replay run`: the day through the insurer side, in process. A reader thread
//! streams lots from the file into a bounded channel; one worker per core judges each lot
//! ([`super::check`]) and sends its signed ARL and payment return into a second bounded
//! channel; the consumer ([`super::consume`]) verifies and counts them. Memory holds only the
//! lots and returns in the channels.

use std::io::BufReader;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Instant;

use fse_formats::pki::TrustStore;

use super::check::{CertCache, Judge};
use super::consume::{Consumed, Consumer};
use super::file::{Plan, Reader, Summary};
use super::rates::Rates;

/// Lots waiting for a worker, per worker.
const LOTS_IN_FLIGHT: usize = 64;
/// Returns waiting for the consumer.
const RETURNS_IN_FLIGHT: usize = 1024;

/// What a replay run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    /// The generator's plan, from the file.
    pub plan: Plan,
    /// The generator's summary, from the file's end.
    pub generated: Option<Summary>,
    /// Lots read.
    pub lots: u64,
    /// Sheets read.
    pub sheets: u64,
    /// Sheets in lots whose checks passed.
    pub sheets_verified: u64,
    /// Lots accepted by the batch path.
    pub lots_fast: u64,
    /// Lots judged one signature at a time (the batch refused or a check failed).
    pub lots_single: u64,
    /// ARLs signed by the workers.
    pub arls_signed: u64,
    /// Payment returns signed by the workers.
    pub payment_returns_signed: u64,
    /// Lots whose answer could not be signed (counted, not answered).
    pub lots_unanswered: u64,
    /// What the consumer verified and counted.
    pub consumed: Consumed,
    /// Wall time of the pipeline, seconds (the raw rates measured apart).
    pub wall_secs: f64,
    /// Sheets per second, end to end.
    pub sheets_per_sec: f64,
    /// Lots per second, end to end.
    pub lots_per_sec: f64,
    /// Seconds 8.5 million sheets would take at this rate.
    pub projected_secs_8_5m: f64,
    /// CPU seconds the process spent in the pipeline (user + system, all threads).
    pub cpu_secs: f64,
    /// Seconds 8.5 million sheets would take with every core to itself: the pipeline's CPU
    /// per sheet times 8.5 million, over the cores (an estimate for a shared machine).
    pub projected_idle_secs_8_5m: f64,
    /// Peak resident set of the process, KiB (`VmHWM`).
    pub peak_rss_kib: u64,
    /// Workers judging lots.
    pub workers: usize,
    /// Cores the system offers.
    pub cores: usize,
    /// `/proc/loadavg` at the start and at the end.
    pub load: [String; 2],
    /// Raw Ed25519 rates in the same run, on as many threads as workers.
    pub rates: Option<Rates>,
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads.
    pub workers: usize,
    /// Seconds each raw rate is measured; 0: not measured.
    pub rates_secs: f64,
}

/// The test PKI's trust store: root, CAs and CRLs made now.
pub fn test_trust() -> Result<TrustStore, String> {
    let pki = crate::pki::TestPki::shared()?;
    let mut store = TrustStore::new();
    store
        .add_certificates(format!("{}{}", pki.root_pem(), pki.ca_pem()).as_bytes())
        .map_err(|e| format!("trust store: {e}"))?;
    let crl = pki
        .crl_pem(&[], &[], time::OffsetDateTime::now_utc())
        .map_err(|e| format!("trust store: {e}"))?;
    store
        .add_crls(crl.as_bytes())
        .map_err(|e| format!("trust store: {e}"))?;
    Ok(store)
}

/// What one worker did.
#[derive(Default)]
struct Tally {
    lots: u64,
    sheets: u64,
    verified: u64,
    fast: u64,
    arls: u64,
    payments: u64,
    unanswered: u64,
}

/// Runs the day in `path` through the pipeline.
pub fn run(path: &std::path::Path, options: &RunOptions) -> Result<RunReport, String> {
    let load_start = loadavg();
    let workers = options.workers.max(1);
    let rates =
        (options.rates_secs > 0.0).then(|| super::rates::measure(workers, options.rates_secs));
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader =
        Reader::new(BufReader::with_capacity(1 << 20, file)).map_err(|e| e.to_string())?;
    let plan = reader.plan.clone();
    let trust = test_trust()?;
    let certs = CertCache::default();
    let now = chrono::Utc::now();
    let started = Instant::now();
    let cpu_start = cpu_secs();
    let (lot_tx, lot_rx) = mpsc::sync_channel::<Vec<u8>>(LOTS_IN_FLIGHT * workers);
    let lot_rx = Mutex::new(lot_rx);
    let (ret_tx, ret_rx) = mpsc::sync_channel::<Vec<u8>>(RETURNS_IN_FLIGHT);
    let (tally, consumed, read) = std::thread::scope(|scope| {
        let consumer = scope.spawn(|| {
            let mut c = Consumer::new(&trust, now.timestamp());
            for der in ret_rx {
                c.take(&der);
            }
            c.flush();
            c.counts
        });
        let mut handles = Vec::new();
        for _ in 0..workers {
            let (ret_tx, lot_rx, trust, certs) = (ret_tx.clone(), &lot_rx, &trust, &certs);
            handles.push(scope.spawn(move || work(lot_rx, &ret_tx, trust, certs, now)));
        }
        drop(ret_tx);
        let read = read_all(&mut reader, &lot_tx);
        drop(lot_tx);
        let mut tally = Tally::default();
        for h in handles {
            let t = h.join().map_err(|_| "a worker panicked".to_string())??;
            tally.lots += t.lots;
            tally.sheets += t.sheets;
            tally.verified += t.verified;
            tally.fast += t.fast;
            tally.arls += t.arls;
            tally.payments += t.payments;
            tally.unanswered += t.unanswered;
        }
        let consumed = consumer
            .join()
            .map_err(|_| "the consumer panicked".to_string())?;
        Ok::<_, String>((tally, consumed, read))
    })?;
    read?;
    let wall_secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_start;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sheets_per_sec = tally.sheets as f64 / wall_secs.max(1e-9);
    Ok(RunReport {
        plan,
        generated: reader.summary.clone(),
        lots: tally.lots,
        sheets: tally.sheets,
        sheets_verified: tally.verified,
        lots_fast: tally.fast,
        lots_single: tally.lots - tally.fast,
        arls_signed: tally.arls,
        payment_returns_signed: tally.payments,
        lots_unanswered: tally.unanswered,
        consumed,
        wall_secs,
        sheets_per_sec,
        lots_per_sec: tally.lots as f64 / wall_secs.max(1e-9),
        projected_secs_8_5m: 8_500_000.0 / sheets_per_sec.max(1e-9),
        cpu_secs: cpu,
        projected_idle_secs_8_5m: 8_500_000.0 * cpu
            / (tally.sheets.max(1) as f64)
            / workers.min(cores) as f64,
        peak_rss_kib: peak_rss_kib(),
        workers,
        cores,
        load: [load_start, loadavg()],
        rates,
    })
}

fn read_all(
    reader: &mut Reader<BufReader<std::fs::File>>,
    tx: &mpsc::SyncSender<Vec<u8>>,
) -> Result<(), String> {
    while let Some(lot) = reader.next_lot().map_err(|e| e.to_string())? {
        if tx.send(lot).is_err() {
            return Err("the workers stopped".into());
        }
    }
    Ok(())
}

fn work(
    lots: &Mutex<mpsc::Receiver<Vec<u8>>>,
    returns: &mpsc::SyncSender<Vec<u8>>,
    trust: &TrustStore,
    certs: &CertCache,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Tally, String> {
    let mut judge = Judge {
        trust,
        certs,
        now: now.timestamp(),
        now_text: now.format("%Y%m%d%H%M%SZ").to_string(),
        insurers: Default::default(),
    };
    let mut t = Tally::default();
    loop {
        let next = lots.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(bytes) = next else { break };
        t.lots += 1;
        // A lot whose answer cannot be signed (an insurer code the test PKI cannot certify)
        // is counted, never the end of the run.
        let Ok(judged) = judge.lot(&bytes, crate::insurer::DEFAULT_INSURER) else {
            t.unanswered += 1;
            continue;
        };
        t.sheets += judged.sheets;
        t.verified += judged.verified;
        t.fast += u64::from(judged.fast);
        t.arls += 1;
        if returns.send(judged.arl).is_err() {
            return Err("the consumer stopped".into());
        }
        if let Some(p) = judged.payment {
            t.payments += 1;
            if returns.send(p).is_err() {
                return Err("the consumer stopped".into());
            }
        }
    }
    Ok(t)
}

/// The process's peak resident set, KiB (0 where `/proc` does not say).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds of this process so far (user + system, from `/proc/self/stat`, at the usual
/// 100 ticks a second); 0 where `/proc` does not say.
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command's closing parenthesis: utime and stime are the 12th
            // and 13th of them (fields 14 and 15 of the line).
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
