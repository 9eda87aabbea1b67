//! The load itself: one thread and connection per practice creating sheets, the events
//! followed while lots are sent and acknowledged, and the wait for them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use serde_json::json;

use fsed_client::Client;

use super::client::{connect, error_key, setup, Created};
use super::report::percentiles;
use super::scenario::{new_key, practices, Patients, Practice, Scenario};
use super::{Keys, PracticeArgs, PracticeError, Summary, Wait};

/// Events followed during a run: when each lot was confirmed and acknowledged, and its size.
#[derive(Default)]
struct Seen {
    sent: HashMap<String, (Instant, u64)>,
    acknowledged: HashMap<String, Instant>,
    sent_sheets: u64,
}

/// Subscribes to `lot.sent` and `arl.received` on a connection of its own and records them
/// into `seen` from a thread until `stop`.
fn follow_events(
    path: &Path,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> Result<(), PracticeError> {
    let mut c = connect(path)?;
    // Only what is counted here: fsed then sends no line per sheet.
    setup(
        &mut c,
        path,
        "events.subscribe",
        json!({"events": ["lot.sent", "arl.received"]}),
    )?;
    let _ = c
        .stream()
        .set_read_timeout(Some(Duration::from_millis(200)));
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(v) = c.read_typed::<serde_json::Value>() else {
                continue;
            };
            let ev = &v["params"];
            let lot = ev["lot_id"].as_str().unwrap_or_default().to_string();
            let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
            match ev["event"].as_str() {
                Some("lot.sent") => {
                    let n = ev["sheets"].as_u64().unwrap_or(0);
                    if s.sent.insert(lot, (Instant::now(), n)).is_none() {
                        s.sent_sheets += n;
                    }
                }
                Some("arl.received") => {
                    s.acknowledged.entry(lot).or_insert_with(Instant::now);
                }
                _ => {}
            }
        }
    });
    Ok(())
}

/// Runs the load; prints a progress bar on stderr unless `quiet`.
pub fn run(args: &PracticeArgs) -> Result<Summary, PracticeError> {
    let mut admin = connect(&args.socket)?;
    let (list, patients) = prepare(&mut admin, args)?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    if args.wait != Wait::Created {
        follow_events(&args.socket, Arc::clone(&seen), Arc::clone(&stop))?;
    }

    let done = Arc::new(AtomicU64::new(0));
    let n = args.practices.max(1);
    let start = Instant::now();
    let mut threads = Vec::new();
    for i in 0..n {
        let load = PracticeLoad {
            i,
            n,
            scenario: Scenario::new(&list[i % list.len()], &patients, args.degraded_percent),
            share: args.sheets / n as u64 + u64::from((i as u64) < args.sheets % n as u64),
            interval: (args.rate > 0.0).then(|| Duration::from_secs_f64(n as f64 / args.rate)),
            socket: args.socket.clone(),
            done: Arc::clone(&done),
            seed: args.seed.wrapping_add(i as u64),
            keys: args.keys,
            start,
        };
        threads.push(std::thread::spawn(move || load.run()));
    }
    let bar = progress(args, &threads, &done);
    let (mut lat, ids, errors) = gather(threads);
    let seconds = start.elapsed().as_secs_f64();
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let created = ids.len() as u64;
    let mut summary = Summary {
        practices: n,
        requested: args.sheets,
        created,
        errors,
        seconds,
        sheets_per_second: created as f64 / seconds.max(1e-9),
        latency_ms: percentiles(&mut lat),
        sent: None,
        end_to_end_sheets_per_second: None,
        acknowledged: None,
        arl_latency_ms: None,
    };
    if args.wait != Wait::Created {
        wait_for_lots(args, &mut admin, &seen, &ids, start, &mut summary)?;
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&summary).unwrap_or_default(),
        )?;
    }
    Ok(summary)
}

/// Lists the cards fsed sees and the practices they make; verifies with `--pin` each CPS
/// whose PIN is not verified yet.
fn prepare(
    admin: &mut Client,
    args: &PracticeArgs,
) -> Result<(Vec<Practice>, Patients), PracticeError> {
    let cards = setup(admin, &args.socket, "cards.list", json!({}))?;
    let (list, pins, patients) = practices(&cards);
    if list.is_empty() {
        return Err(PracticeError::NoCps("fsed sees no CPS card".into()));
    }
    for (serial, verified) in &pins {
        if *verified {
            continue;
        }
        let Some(pin) = &args.pin else {
            return Err(PracticeError::NoCps(format!(
                "the PIN of {serial} is not verified: give --pin"
            )));
        };
        setup(
            admin,
            &args.socket,
            "cards.verify_pin",
            json!({"pin": pin, "cps_serial": serial}),
        )?;
    }
    Ok((list, patients))
}

/// What one practice's thread brings back: the latency of each sheet created (µs), its id
/// with the time its request left, and the errors by key.
type Outcome = (Vec<u64>, Vec<(i64, Instant)>, BTreeMap<String, u64>);

/// One practice's share of the load, as its thread runs it.
struct PracticeLoad {
    /// Its rank among the `n` practices.
    i: usize,
    n: usize,
    scenario: Scenario,
    /// Sheets it creates.
    share: u64,
    /// Time between two of its requests, when a rate is given.
    interval: Option<Duration>,
    socket: PathBuf,
    /// Sheets done by every practice (the progress bar).
    done: Arc<AtomicU64>,
    seed: u64,
    keys: Keys,
    start: Instant,
}

impl PracticeLoad {
    /// Creates its sheets one request at a time on its own connection (reconnecting after
    /// an I/O error), at its pace when it has one.
    fn run(self) -> Outcome {
        let PracticeLoad {
            i,
            n,
            scenario,
            share,
            interval,
            socket,
            done,
            seed,
            keys,
            start,
        } = self;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut lat = Vec::with_capacity(share as usize);
        let mut ids: Vec<(i64, Instant)> = Vec::with_capacity(share as usize);
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut client = connect(&socket).ok();
        // The params of the request being sent, their buffer kept from one to the next.
        let mut params = Vec::with_capacity(1024);
        // Practices start spread over one interval, not all at once.
        let offset = interval.map_or(Duration::ZERO, |d| d.mul_f64(i as f64 / n as f64));
        for k in 0..share {
            if let Some(d) = interval {
                let due = start + offset + d * k as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let key = new_key(keys, &mut rng);
            scenario.request(&mut rng, &key, &mut params);
            let t = Instant::now();
            let answer = client
                .as_mut()
                .map(|c| c.call_json::<Created>("fse.create", &params));
            match answer {
                Some(Ok(Ok(created))) => {
                    lat.push(t.elapsed().as_micros() as u64);
                    ids.push((created.id, t));
                }
                Some(Ok(Err(e))) => {
                    *errors.entry(error_key(&e)).or_default() += 1;
                }
                // Not connected, or the connection failed: counted, then connected anew.
                None | Some(Err(_)) => {
                    *errors.entry("io".into()).or_default() += 1;
                    client = connect(&socket).ok();
                }
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
        (lat, ids, errors)
    }
}

/// Shows the sheets done on a progress bar (unless `quiet`) until every practice is done.
fn progress(
    args: &PracticeArgs,
    threads: &[std::thread::JoinHandle<Outcome>],
    done: &AtomicU64,
) -> Option<indicatif::ProgressBar> {
    let bar = (!args.quiet).then(|| {
        let b = indicatif::ProgressBar::new(args.sheets);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} sheets  {per_sec}  eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    while threads.iter().any(|t| !t.is_finished()) {
        if let Some(b) = &bar {
            b.set_position(done.load(Ordering::Relaxed));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bar
}

/// Every practice's outcome, put together.
fn gather(threads: Vec<std::thread::JoinHandle<Outcome>>) -> Outcome {
    let mut lat = Vec::new();
    let mut ids = Vec::new();
    let mut errors = BTreeMap::new();
    for t in threads {
        if let Ok((l, i, e)) = t.join() {
            lat.extend(l);
            ids.extend(i);
            for (k, v) in e {
                *errors.entry(k).or_default() += v;
            }
        }
    }
    (lat, ids, errors)
}

/// Closes and sends whatever is open, then waits until every sheet created is confirmed (and,
/// with `--wait acknowledged`, every lot sent has its ARL), filling in the summary's end-to-end
/// figures.
fn wait_for_lots(
    args: &PracticeArgs,
    admin: &mut Client,
    seen: &Mutex<Seen>,
    ids: &[(i64, Instant)],
    start: Instant,
    summary: &mut Summary,
) -> Result<(), PracticeError> {
    let created = ids.len() as u64;
    // Whatever is still open is closed and sent now.
    setup(admin, &args.socket, "lots.close", json!({}))?;
    setup(admin, &args.socket, "transmit.now", json!({}))?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    loop {
        let (sent, last) = {
            let s = seen.lock().unwrap_or_else(|p| p.into_inner());
            (s.sent_sheets, s.sent.values().map(|v| v.0).max())
        };
        if sent >= created {
            summary.sent = Some(sent);
            summary.end_to_end_sheets_per_second =
                last.map(|l| created as f64 / l.duration_since(start).as_secs_f64().max(1e-9));
            break;
        }
        if Instant::now() > deadline {
            return Err(PracticeError::Timeout(
                args.timeout_secs,
                format!("{sent} of {created} sheets confirmed"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if args.wait != Wait::Acknowledged {
        return Ok(());
    }
    let lots: Vec<String> = {
        let s = seen.lock().unwrap_or_else(|p| p.into_inner());
        s.sent.keys().cloned().collect()
    };
    loop {
        let acked = {
            let s = seen.lock().unwrap_or_else(|p| p.into_inner());
            lots.iter()
                .filter(|l| s.acknowledged.contains_key(*l))
                .count()
        };
        if acked == lots.len() {
            break;
        }
        if Instant::now() > deadline {
            return Err(PracticeError::Timeout(
                args.timeout_secs,
                format!("{acked} of {} lots acknowledged", lots.len()),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let arl_at = {
        let s = seen.lock().unwrap_or_else(|p| p.into_inner());
        s.acknowledged.clone()
    };
    let created_at: HashMap<i64, Instant> = ids.iter().copied().collect();
    let mut lat = Vec::with_capacity(ids.len());
    for lot in &lots {
        let l = setup(admin, &args.socket, "lots.get", json!({"lot_id": lot}))?;
        let Some(at) = arl_at.get(lot) else { continue };
        for id in l["sheet_ids"].as_array().into_iter().flatten() {
            if let Some(t) = id.as_i64().and_then(|id| created_at.get(&id)) {
                lat.push(at.saturating_duration_since(*t).as_micros() as u64);
            }
        }
    }
    summary.acknowledged = Some(lat.len() as u64);
    summary.arl_latency_ms = Some(percentiles(&mut lat));
    Ok(())
}
