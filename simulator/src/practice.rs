//! `fse-sim practice`: a load generator that drives fsed like many practices
//! at once, through fsed's own socket API (JSON-RPC, one object a line).
//!
//! Each simulated practice is one connection and one thread. A practice
//! bills with one of the CPS cards fsed sees (practices are spread over
//! them, so the mix of professions is the mix of cards inserted): a GP bills
//! consultations (`G`, half in tiers payant AMO, with the AMC's tiers payant
//! when the patient's card offers it), a specialist `CS` with an excess
//! fee, a nurse `AMI` acts on prescription, a physiotherapist `AMK`
//! sessions, a remplaçant `G` in the name of the practitioner he replaces;
//! patients are the beneficiaries of the Vitale card inserted, and a share
//! of doctors' sheets is made in degraded mode (no card, beneficiary typed).
//!
//! Sheets are created at a given total rate or as fast as possible; the
//! summary gives sheets per second, the latency percentiles of `fse.create`
//! and the errors by code. With `--wait sent` or `--wait acknowledged` it
//! then closes the lots, follows fsed's events until every sheet is
//! broker-confirmed (or acknowledged by its insurer), and gives the end to
//! end rate and the create → ARL latency.
//!
//! Each request carries a new UUIDv7 as its idempotency key, as `daemon/API.md`
//! advises practice software: keys that grow with time are added at the end of
//! fsed's key index, where random keys (UUIDv4, `--keys v4`) each rewrite a page of it.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use rand::{Rng, SeedableRng};
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// How long the run waits after creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Wait {
    /// Stop once every sheet is created.
    Created,
    /// Until every created sheet's lot is broker-confirmed (or its spool file durable).
    Sent,
    /// Until every created sheet's lot has its ARL.
    Acknowledged,
}

/// The idempotency keys the practices send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Keys {
    /// UUIDv7: the millisecond, then random bits; keys grow with time, as `daemon/API.md`
    /// advises.
    V7,
    /// UUIDv4: random, as practice software that does not follow that advice may send.
    V4,
}

/// `fse-sim practice` arguments.
#[derive(clap::Args, Debug)]
pub struct PracticeArgs {
    /// fsed's API socket.
    #[arg(long, env = "FSED_SOCKET", default_value = "/run/fsed/fsed.sock")]
    pub socket: PathBuf,
    /// Simulated practices (one connection each).
    #[arg(long, default_value_t = 8)]
    pub practices: usize,
    /// Sheets to create in all.
    #[arg(long, default_value_t = 1000)]
    pub sheets: u64,
    /// Total rate in sheets per second; 0 = as fast as fsed answers.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Verify each CPS's PIN with this value first (a simulated card's PIN; never logged).
    #[arg(long)]
    pub pin: Option<String>,
    /// Share of doctors' sheets made in degraded mode, in percent.
    #[arg(long, default_value_t = 5)]
    pub degraded_percent: u32,
    /// What to wait for once the sheets are created.
    #[arg(long, value_enum, default_value = "created")]
    pub wait: Wait,
    /// Longest wait for `--wait`, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Also write the summary (JSON) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar (the summary is still printed).
    #[arg(long)]
    pub quiet: bool,
    /// Seed of the scenario mix (runs with the same seed and cards send the same requests).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Idempotency keys: growing with time (v7) or random (v4).
    #[arg(long, value_enum, default_value = "v7")]
    pub keys: Keys,
}

/// Why the load generator could not run.
#[derive(Debug, thiserror::Error)]
pub enum PracticeError {
    /// fsed's socket could not be used.
    #[error("fsed socket {path}: {reason}")]
    Socket {
        /// The socket.
        path: String,
        /// What failed.
        reason: String,
    },
    /// fsed answered a set-up call with an error.
    #[error("{method}: {error}")]
    Setup {
        /// The method.
        method: String,
        /// fsed's error object.
        error: String,
    },
    /// No CPS is usable (none inserted, or its PIN is not verified and no `--pin` was given).
    #[error("no usable CPS: {0}")]
    NoCps(String),
    /// `--wait` ran out of time.
    #[error("gave up waiting after {0} s: {1}")]
    Timeout(u64, String),
    /// The summary file could not be written.
    #[error("summary file: {0}")]
    Io(#[from] std::io::Error),
}

/// A line from fsed: an answer (with the id of its request) or a notification (no id), with
/// only the fields read here; the others are skipped without being built.
#[derive(serde::Deserialize)]
struct Reply<T> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default = "Option::default")]
    result: Option<T>,
    /// The error object, kept as its text: read further only when there is one.
    #[serde(default)]
    error: Option<Box<RawValue>>,
}

/// What the load loop reads of an `fse.create` answer: the sheet's id. The rest of the result
/// (its number, state and the sheet, most of the answer) is skipped as it is parsed, not built.
#[derive(serde::Deserialize)]
struct Created {
    id: i64,
}

/// The key an `fse.create` error is counted under: `error.data.rule` when it is a string,
/// else `error.code` as JSON text (`null` when the error has none). Errors are few: the
/// object is parsed whole.
fn error_key(error: &RawValue) -> String {
    let e: Value = serde_json::from_str(error.get()).unwrap_or(Value::Null);
    e["data"]["rule"]
        .as_str()
        .map_or_else(|| e["code"].to_string(), str::to_string)
}

/// A blocking JSON-RPC client on fsed's socket.
struct Client {
    /// The line being read (its buffer kept from one answer to the next).
    line: Vec<u8>,
    /// The line being sent (likewise).
    out: Vec<u8>,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    path: String,
}

impl Client {
    fn connect(path: &Path) -> Result<Client, PracticeError> {
        let fail = |e: std::io::Error| PracticeError::Socket {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let s = UnixStream::connect(path).map_err(fail)?;
        Client::on(s, path.display().to_string()).map_err(fail)
    }

    /// A client on a connected socket (`path` names it in errors).
    fn on(s: UnixStream, path: String) -> std::io::Result<Client> {
        let writer = s.try_clone()?;
        Ok(Client {
            line: Vec::with_capacity(4096),
            out: Vec::with_capacity(1024),
            reader: BufReader::new(s),
            writer,
            next_id: 0,
            path,
        })
    }

    /// One call: `Ok(result)` or `Err(error object)`; notifications in between are skipped.
    fn call(&mut self, method: &str, params: Value) -> std::io::Result<Result<Value, Value>> {
        let params = serde_json::to_vec(&params)?;
        Ok(match self.call_as(method, &params)? {
            Ok(v) => Ok(v),
            Err(e) => Err(serde_json::from_str(e.get())?),
        })
    }

    /// [`Client::call`] with `params` given as JSON text and the result read as `T` only:
    /// what the load loop needs of an answer, without building the rest of it (a sheet's
    /// JSON) as values. The error object comes as its text.
    fn call_as<T: serde::de::DeserializeOwned>(
        &mut self,
        method: &str,
        params: &[u8],
    ) -> std::io::Result<Result<T, Box<RawValue>>> {
        self.next_id += 1;
        let id = self.next_id;
        // `{"jsonrpc":"2.0","id":…,"method":…,"params":…}`, members in that order.
        self.out.clear();
        self.out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        write!(self.out, "{id}")?;
        self.out.extend_from_slice(b",\"method\":");
        serde_json::to_writer(&mut self.out, method)?;
        self.out.extend_from_slice(b",\"params\":");
        self.out.extend_from_slice(params);
        self.out.extend_from_slice(b"}\n");
        self.writer.write_all(&self.out)?;
        loop {
            let reply: Reply<T> = self.read_as()?;
            if reply.id != Some(id) {
                continue;
            }
            return match (reply.result, reply.error) {
                (_, Some(e)) => Ok(Err(e)),
                (Some(r), None) => Ok(Ok(r)),
                // A `null` result (or none): fine for whoever takes any value.
                (None, None) => T::deserialize(Value::Null)
                    .map(Ok)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            };
        }
    }

    /// The next line, whole.
    fn read(&mut self) -> std::io::Result<Value> {
        self.read_as()
    }

    /// The next line, read as `T`.
    fn read_as<T: serde::de::DeserializeOwned>(&mut self) -> std::io::Result<T> {
        self.line.clear();
        if self.reader.buffer().is_empty() {
            crate::wait_readable(self.reader.get_ref())?;
        }
        if self.reader.read_until(b'\n', &mut self.line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "fsed closed the connection",
            ));
        }
        serde_json::from_slice(&self.line)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    fn setup(&mut self, method: &str, params: Value) -> Result<Value, PracticeError> {
        match self.call(method, params) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(PracticeError::Setup {
                method: method.into(),
                error: e.to_string(),
            }),
            Err(e) => Err(PracticeError::Socket {
                path: self.path.clone(),
                reason: format!("{method}: {e}"),
            }),
        }
    }
}

/// What a practice bills, decided by its CPS.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Generalist,
    Specialist,
    Nurse,
    Physiotherapist,
    Remplacant,
}

#[derive(Clone, Debug)]
struct Practice {
    cps_serial: String,
    kind: Kind,
}

/// The patients of the Vitale card inserted (none: every sheet in degraded mode).
#[derive(Clone, Debug, Default)]
struct Patients {
    /// Beneficiaries as typed in degraded mode.
    typed: Vec<Value>,
    /// The AMC pays directly in tiers payant.
    amc_tiers_payant: bool,
    /// A Vitale card is present.
    card: bool,
}

fn practices(cards: &Value) -> (Vec<Practice>, Vec<(String, bool)>, Patients) {
    let mut out = Vec::new();
    let mut pins = Vec::new();
    let mut patients = Patients::default();
    for c in cards.as_array().into_iter().flatten() {
        if let Some(cps) = c.get("cps") {
            let serial = cps["holder"]["serial"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if cps["holder"]["card_type"] != "CPS" && cps["holder"]["card_type"] != "cps" {
                continue;
            }
            let profession = cps["holder"]["profession"].as_str().unwrap_or_default();
            let specialty = cps["holder"]["specialty"].as_str().unwrap_or_default();
            let remplacant = cps["situations"][0]["mode"] == "remplacant";
            let kind = match (profession, specialty) {
                _ if remplacant => Kind::Remplacant,
                ("10", "01") => Kind::Generalist,
                ("10", _) => Kind::Specialist,
                ("60", _) => Kind::Nurse,
                ("70", _) => Kind::Physiotherapist,
                _ => continue,
            };
            pins.push((serial.clone(), c["pin_verified"] == true));
            out.push(Practice {
                cps_serial: serial,
                kind,
            });
        } else if let Some(v) = c.get("vitale") {
            patients.card = true;
            patients.amc_tiers_payant =
                v["amc"]["direct"] == true && v["amc"]["tiers_payant"] == true;
            let o = &v["organism"];
            let organism = format!(
                "{}{}{}",
                o["regime"].as_str().unwrap_or_default(),
                o["caisse"].as_str().unwrap_or_default(),
                o["centre"].as_str().unwrap_or_default()
            );
            for b in v["beneficiaries"].as_array().into_iter().flatten() {
                patients.typed.push(json!({
                    "nir": b["nir"], "surname": b["surname"], "given_name": b["given_name"],
                    "birth_date": b["birth_date"], "rank": b["rank"], "organism": organism,
                }));
            }
        }
    }
    (out, pins, patients)
}

/// A new idempotency key of kind `keys`.
fn new_key(keys: Keys, rng: &mut impl Rng) -> uuid::Uuid {
    match keys {
        Keys::V7 => time_ordered_key(rng),
        Keys::V4 => uuid::Builder::from_random_bytes(rng.gen()).into_uuid(),
    }
}

/// A new idempotency key: a UUIDv7 (RFC 9562), the current millisecond then random bits.
fn time_ordered_key(rng: &mut impl Rng) -> uuid::Uuid {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    uuid::Builder::from_unix_timestamp_millis(ms, &rng.gen()).into_uuid()
}

/// `,"name":value`, a member of the params after the first.
fn member(name: &str, value: &Value) -> String {
    format!(",{}:{value}", Value::from(name))
}

/// The `fse.create` requests of one practice. What does not change from one request to the
/// next (the act and its prescriber, the CPS, the practitioner replaced, each beneficiary's
/// degraded-mode identity, the tiers payant) is written as JSON once, from the `Value`s the
/// requests used to be built of; a request only draws its random parts and puts the pieces
/// together.
///
/// The members come in the order `serde_json` writes a `Value`'s (by name): the params are
/// the bytes of the request as it was built before, with the same draws from the same seed.
struct Scenario {
    /// A GP or a remplaçant: degraded mode and tiers payant are drawn.
    doctor: bool,
    /// A Vitale card is present (else every sheet is made in degraded mode).
    card: bool,
    /// Beneficiaries to draw from (none: the index is 0).
    beneficiaries: usize,
    /// Share of doctors' sheets made in degraded mode, in percent.
    degraded_percent: u32,
    /// `{"act":{…}`: the params up to their first member's end.
    act: String,
    /// `,"beneficiary":i` for each beneficiary index.
    beneficiary: Vec<String>,
    /// `,"cps_serial":"…"`.
    cps_serial: String,
    /// `,"degraded":{…}` for each beneficiary index.
    degraded: Vec<String>,
    /// `,"replaced":{…}` for a remplaçant, else empty.
    replaced: String,
    /// `,"tiers_payant":{…}` (or empty) outside degraded mode, by the tiers payant coin.
    tiers_payant: [String; 2],
    /// `,"tiers_payant":{…}` in degraded mode.
    degraded_tiers_payant: String,
}

impl Scenario {
    /// Practice `p`'s requests on patients `pat`. Its prescriptions are dated three days
    /// before today, the day this is made.
    fn new(p: &Practice, pat: &Patients, degraded_percent: u32) -> Scenario {
        let today = Utc::now().date_naive();
        let prescribed = today
            .checked_sub_days(Days::new(3))
            .unwrap_or(today)
            .format("%Y%m%d")
            .to_string();
        let prescriber = json!({"national_id": "810000000009", "date": prescribed});
        let act = match p.kind {
            Kind::Generalist | Kind::Remplacant => json!({"code": "G"}),
            Kind::Specialist => json!({"code": "CS", "excess_cents": 2000}),
            Kind::Nurse => json!({"code": "AMI", "prescriber": prescriber}),
            Kind::Physiotherapist => {
                json!({"code": "AMK", "coefficient": 750, "prescriber": prescriber})
            }
        };
        let doctor = matches!(p.kind, Kind::Generalist | Kind::Remplacant);
        let tiers_payant = [false, true].map(|tp| match p.kind {
            Kind::Generalist | Kind::Remplacant => member(
                "tiers_payant",
                &json!({"amo": tp, "amc": tp && pat.amc_tiers_payant}),
            ),
            Kind::Specialist => String::new(),
            Kind::Nurse | Kind::Physiotherapist => member("tiers_payant", &json!({"amo": true})),
        });
        let replaced = if p.kind == Kind::Remplacant {
            member(
                "replaced",
                &json!({"national_id": "810000000009", "surname": "MARTIN",
                        "given_name": "Claire", "billing_number": "75123455"}),
            )
        } else {
            String::new()
        };
        let indices = 0..pat.typed.len().max(1);
        Scenario {
            doctor,
            card: pat.card,
            beneficiaries: pat.typed.len(),
            degraded_percent,
            act: format!("{{\"act\":{act}"),
            beneficiary: indices
                .clone()
                .map(|i| member("beneficiary", &json!(i)))
                .collect(),
            cps_serial: member("cps_serial", &json!(p.cps_serial)),
            degraded: indices
                .map(|i| {
                    let typed = pat.typed.get(i).cloned().unwrap_or(Value::Null);
                    member(
                        "degraded",
                        &json!({"reason": "carte Vitale oubliée", "beneficiary": typed}),
                    )
                })
                .collect(),
            replaced,
            tiers_payant,
            degraded_tiers_payant: member("tiers_payant", &json!({"amo": true})),
        }
    }

    /// One request's params (JSON text) in `out`, with idempotency key `key`: draws the
    /// beneficiary, then (for a doctor with a Vitale card) degraded mode, then (for a doctor)
    /// tiers payant.
    fn request(&self, rng: &mut impl Rng, key: &uuid::Uuid, out: &mut Vec<u8>) {
        let beneficiary = if self.beneficiaries == 0 {
            0
        } else {
            rng.gen_range(0..self.beneficiaries)
        };
        let degraded = !self.card || (self.doctor && rng.gen_range(0..100) < self.degraded_percent);
        let tp = self.doctor && rng.gen_bool(0.5);
        out.clear();
        out.extend_from_slice(self.act.as_bytes());
        if !degraded {
            out.extend_from_slice(self.beneficiary[beneficiary].as_bytes());
        }
        out.extend_from_slice(self.cps_serial.as_bytes());
        if degraded {
            out.extend_from_slice(self.degraded[beneficiary].as_bytes());
        }
        out.extend_from_slice(b",\"idempotency_key\":\"");
        out.extend_from_slice(
            key.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .as_bytes(),
        );
        out.push(b'"');
        out.extend_from_slice(self.replaced.as_bytes());
        let tiers_payant = if degraded {
            &self.degraded_tiers_payant
        } else {
            &self.tiers_payant[usize::from(tp)]
        };
        out.extend_from_slice(tiers_payant.as_bytes());
        out.push(b'}');
    }
}

/// The result of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Practices (connections).
    pub practices: usize,
    /// Sheets asked for.
    pub requested: u64,
    /// Sheets created.
    pub created: u64,
    /// Requests refused or failed, by error code (`data.rule` when fsed gives one).
    pub errors: BTreeMap<String, u64>,
    /// Seconds from the first request to the last answer.
    pub seconds: f64,
    /// Sheets created per second.
    pub sheets_per_second: f64,
    /// `fse.create` latency percentiles, milliseconds.
    pub latency_ms: Percentiles,
    /// Sheets broker-confirmed (or spooled), once `--wait sent` or `acknowledged`.
    pub sent: Option<u64>,
    /// Sheets per second from the first request until the last of them was confirmed.
    pub end_to_end_sheets_per_second: Option<f64>,
    /// Sheets whose lot has its ARL, once `--wait acknowledged`.
    pub acknowledged: Option<u64>,
    /// Latency from the request to its lot's ARL, once `--wait acknowledged`.
    pub arl_latency_ms: Option<Percentiles>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// Percentiles of durations given in microseconds (sorted in place).
fn percentiles(us: &mut [u64]) -> Percentiles {
    if us.is_empty() {
        return Percentiles::default();
    }
    us.sort_unstable();
    let at = |q: f64| {
        let i = ((us.len() as f64 * q).ceil() as usize).clamp(1, us.len()) - 1;
        us[i] as f64 / 1000.0
    };
    Percentiles {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// Events followed during a run: when each lot was confirmed and acknowledged, and its size.
#[derive(Default)]
struct Seen {
    sent: HashMap<String, (Instant, u64)>,
    acknowledged: HashMap<String, Instant>,
    sent_sheets: u64,
}

fn follow_events(
    path: &Path,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> Result<(), PracticeError> {
    let mut c = Client::connect(path)?;
    // Only what is counted here: fsed then sends no line per sheet.
    c.setup(
        "events.subscribe",
        json!({"events": ["lot.sent", "arl.received"]}),
    )?;
    let _ = c
        .reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)));
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(v) = c.read() else {
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
    let mut admin = Client::connect(&args.socket)?;
    let cards = admin.setup("cards.list", json!({}))?;
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
        admin.setup(
            "cards.verify_pin",
            json!({"pin": pin, "cps_serial": serial}),
        )?;
    }
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
        let scenario = Scenario::new(&list[i % list.len()], &patients, args.degraded_percent);
        let share = args.sheets / n as u64 + u64::from((i as u64) < args.sheets % n as u64);
        let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(n as f64 / args.rate));
        let (socket, done) = (args.socket.clone(), Arc::clone(&done));
        let (seed, keys) = (args.seed.wrapping_add(i as u64), args.keys);
        threads.push(std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut lat = Vec::with_capacity(share as usize);
            let mut ids: Vec<(i64, Instant)> = Vec::with_capacity(share as usize);
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut client = Client::connect(&socket).ok();
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
                let answer = match client.as_mut() {
                    Some(c) => c.call_as::<Created>("fse.create", &params),
                    None => Err(std::io::Error::other("not connected")),
                };
                match answer {
                    Ok(Ok(created)) => {
                        lat.push(t.elapsed().as_micros() as u64);
                        ids.push((created.id, t));
                    }
                    Ok(Err(e)) => {
                        *errors.entry(error_key(&e)).or_default() += 1;
                    }
                    Err(_) => {
                        *errors.entry("io".into()).or_default() += 1;
                        client = Client::connect(&socket).ok();
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (lat, ids, errors)
        }));
    }
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
    admin.setup("lots.close", json!({}))?;
    admin.setup("transmit.now", json!({}))?;
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
        let l = admin.setup("lots.get", json!({"lot_id": lot}))?;
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

/// The summary as a few human lines.
pub fn human(s: &Summary) -> String {
    let mut out = format!(
        "practices: {}\nsheets created: {} of {} in {:.2} s = {:.0} sheets/s\nfse.create latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}\n",
        s.practices, s.created, s.requested, s.seconds, s.sheets_per_second,
        s.latency_ms.p50, s.latency_ms.p90, s.latency_ms.p99, s.latency_ms.max
    );
    if s.errors.is_empty() {
        out.push_str("errors: none\n");
    } else {
        for (code, n) in &s.errors {
            out.push_str(&format!("errors {code}: {n}\n"));
        }
    }
    if let (Some(sent), Some(rate)) = (s.sent, s.end_to_end_sheets_per_second) {
        out.push_str(&format!(
            "sheets confirmed by the broker: {sent} — {rate:.0} sheets/s end to end\n"
        ));
    }
    if let (Some(n), Some(p)) = (s.acknowledged, &s.arl_latency_ms) {
        out.push_str(&format!(
            "create → ARL latency ms ({n} sheets): p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}\n",
            p.p50, p.p90, p.p99, p.max
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_ranked_values() {
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let p = percentiles(&mut v);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(percentiles(&mut []).max, 0.0);
    }

    #[test]
    fn keys_are_distinct_uuid_v7_in_the_order_they_are_made() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut keys = Vec::new();
        for _ in 0..3 {
            keys.push(time_ordered_key(&mut rng).to_string());
            std::thread::sleep(Duration::from_millis(2));
        }
        for k in &keys {
            let u = uuid::Uuid::parse_str(k).unwrap();
            assert_eq!(u.get_version_num(), 7, "{k}");
        }
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, keys, "made 2 ms apart, they sort as made");
        let random = new_key(Keys::V4, &mut rng);
        assert_eq!(random.get_version_num(), 4, "{random}");
    }

    #[test]
    fn practices_follow_the_cards_fsed_sees() {
        let cards = json!([
            {"cps": {"holder": {"card_type": "CPS", "serial": "A", "profession": "60", "specialty": "00"},
                     "situations": [{"mode": "liberal"}]}, "pin_verified": true},
            {"cps": {"holder": {"card_type": "CPE", "serial": "B", "profession": "10", "specialty": "01"},
                     "situations": [{"mode": "liberal"}]}, "pin_verified": false},
            {"vitale": {"organism": {"regime": "01", "caisse": "751", "centre": "0001"},
                        "amc": {"direct": true, "tiers_payant": true},
                        "beneficiaries": [{"nir": "1", "surname": "S", "given_name": "G", "birth_date": "19800101", "rank": 1}]}}
        ]);
        let (list, pins, patients) = practices(&cards);
        assert_eq!(list.len(), 1, "the staff card bills nothing");
        assert_eq!(list[0].kind, Kind::Nurse);
        assert_eq!(pins, vec![("A".to_string(), true)]);
        assert!(patients.amc_tiers_payant);
        assert_eq!(patients.typed[0]["organism"], "017510001");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let r = params(&Scenario::new(&list[0], &patients, 0), &mut rng, &KEY);
        assert_eq!(r["act"]["code"], "AMI");
        assert_eq!(r["cps_serial"], "A");
        assert!(r.get("degraded").is_none());
    }

    const KEY: uuid::Uuid = uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);

    /// One request of `s`, parsed.
    fn params(s: &Scenario, rng: &mut impl Rng, key: &uuid::Uuid) -> Value {
        let mut out = Vec::new();
        s.request(rng, key, &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    /// The request as it was built before [`Scenario`] (the reference it is checked against).
    fn reference_request(
        p: &Practice,
        pat: &Patients,
        degraded_percent: u32,
        rng: &mut impl Rng,
        key: String,
    ) -> Value {
        let today = Utc::now().date_naive();
        let prescribed = today
            .checked_sub_days(Days::new(3))
            .unwrap_or(today)
            .format("%Y%m%d")
            .to_string();
        let prescriber = json!({"national_id": "810000000009", "date": prescribed});
        let beneficiary = if pat.typed.is_empty() {
            0
        } else {
            rng.gen_range(0..pat.typed.len())
        };
        let doctor = matches!(p.kind, Kind::Generalist | Kind::Remplacant);
        let degraded = !pat.card || (doctor && rng.gen_range(0..100) < degraded_percent);
        let mut r = match p.kind {
            Kind::Generalist | Kind::Remplacant => {
                let tp = rng.gen_bool(0.5);
                json!({"act": {"code": "G"}, "tiers_payant": {"amo": tp, "amc": tp && pat.amc_tiers_payant}})
            }
            Kind::Specialist => json!({"act": {"code": "CS", "excess_cents": 2000}}),
            Kind::Nurse => {
                json!({"act": {"code": "AMI", "prescriber": prescriber}, "tiers_payant": {"amo": true}})
            }
            Kind::Physiotherapist => json!({
                "act": {"code": "AMK", "coefficient": 750, "prescriber": prescriber},
                "tiers_payant": {"amo": true}
            }),
        };
        r["cps_serial"] = json!(p.cps_serial);
        r["idempotency_key"] = json!(key);
        if p.kind == Kind::Remplacant {
            r["replaced"] = json!({"national_id": "810000000009", "surname": "MARTIN",
                                   "given_name": "Claire", "billing_number": "75123455"});
        }
        if degraded {
            r["tiers_payant"] = json!({"amo": true});
            r["degraded"] = json!({"reason": "carte Vitale oubliée",
                                   "beneficiary": pat.typed.get(beneficiary).cloned().unwrap_or(Value::Null)});
        } else {
            r["beneficiary"] = json!(beneficiary);
        }
        r
    }

    #[test]
    fn requests_are_those_built_before_for_every_practice_and_mode() {
        let typed = |n: u32| {
            json!({"nir": format!("18001759900{n}"), "surname": "DUPONT", "given_name": "Zoé",
                   "birth_date": "19800101", "rank": n, "organism": "017510001"})
        };
        let patients = [
            // A card whose AMC pays in tiers payant, three beneficiaries.
            Patients {
                typed: vec![typed(1), typed(2), typed(3)],
                amc_tiers_payant: true,
                card: true,
            },
            // A card without the AMC's tiers payant, one beneficiary.
            Patients {
                typed: vec![typed(1)],
                amc_tiers_payant: false,
                card: true,
            },
            // A card with no beneficiary.
            Patients {
                typed: vec![],
                amc_tiers_payant: false,
                card: true,
            },
            // No card: every sheet in degraded mode, no beneficiary known.
            Patients::default(),
        ];
        let kinds = [
            Kind::Generalist,
            Kind::Specialist,
            Kind::Nurse,
            Kind::Physiotherapist,
            Kind::Remplacant,
        ];
        let (mut degraded, mut secured, mut tp) = (0, 0, 0);
        for kind in kinds {
            // A serial that needs escaping, as well as a plain one.
            for serial in ["8899000001", "A\"\\é"] {
                let p = Practice {
                    cps_serial: serial.into(),
                    kind: kind.clone(),
                };
                for pat in &patients {
                    for percent in [0, 5, 50, 100] {
                        let s = Scenario::new(&p, pat, percent);
                        let mut old = rand::rngs::StdRng::seed_from_u64(u64::from(percent) + 11);
                        let mut new = old.clone();
                        for i in 0..64u128 {
                            let key = uuid::Uuid::from_u128(KEY.as_u128() + i);
                            let want =
                                reference_request(&p, pat, percent, &mut old, key.to_string());
                            let mut out = Vec::new();
                            s.request(&mut new, &key, &mut out);
                            let got: Value = serde_json::from_slice(&out).unwrap();
                            assert_eq!(got, want, "{kind:?} {serial} {pat:?} {percent}%");
                            // Members in the same order: the very bytes sent before.
                            assert_eq!(String::from_utf8(out).unwrap(), want.to_string());
                            assert_eq!(
                                old.clone().gen::<u64>(),
                                new.clone().gen::<u64>(),
                                "the same draws"
                            );
                            if got.get("degraded").is_some() {
                                degraded += 1;
                            } else {
                                secured += 1;
                            }
                            tp += usize::from(got["tiers_payant"]["amc"] == true);
                        }
                    }
                }
            }
        }
        assert!(
            degraded > 0 && secured > 0 && tp > 0,
            "{degraded} {secured} {tp}"
        );
    }

    #[test]
    fn errors_are_counted_by_rule_else_by_code() {
        for (text, key) in [
            (
                r#"{"code":1010,"message":"m","data":{"field":"f","rule":"UNKNOWN_ACT"}}"#,
                "UNKNOWN_ACT",
            ),
            (r#"{"code":-32602,"message":"m"}"#, "-32602"),
            (r#"{"code":1006,"data":{"rule":7}}"#, "1006"),
            (r#"{"code":"E1","data":"text"}"#, r#""E1""#),
            (r#"{"message":"no code"}"#, "null"),
            (r#"["not", "an", "object"]"#, "null"),
        ] {
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            assert_eq!(error_key(&raw), key, "{text}");
        }
    }

    #[test]
    fn answers_are_read_for_the_id_or_the_error_only() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut c = Client::on(ours, "pair".into()).unwrap();
        let fsed = std::thread::spawn(move || {
            let mut r = BufReader::new(theirs.try_clone().unwrap());
            let mut w = theirs;
            let sheet =
                json!({"acts": [{"code": "G", "note": "\"x\" \\ é"}], "pad": "p".repeat(1500)});
            let mut requests = Vec::new();
            for n in 0..2 {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                // The line as the former `Request` struct was serialized.
                assert_eq!(
                    line,
                    format!(
                        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"fse.create\",\"params\":{}}}\n",
                        n + 1,
                        r#"{"act":{"code":"G"},"cps_serial":"A"}"#
                    )
                );
                let req: Value = serde_json::from_str(&line).unwrap();
                let id = req["id"].clone();
                // A notification and another call's answer come first.
                writeln!(
                    w,
                    r#"{{"jsonrpc":"2.0","method":"event","params":{{"event":"lot.sent"}}}}"#
                )
                .unwrap();
                writeln!(w, r#"{{"jsonrpc":"2.0","id":999,"result":{{"id":1}}}}"#).unwrap();
                let answer = if n == 0 {
                    json!({"jsonrpc": "2.0", "id": id,
                           "result": {"id": 42, "number": 7, "state": "created", "sheet": sheet}})
                } else {
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": 1010, "message": "m",
                           "data": {"name": "RULE_VIOLATION", "rule": "UNKNOWN_ACT"}}})
                };
                writeln!(w, "{answer}").unwrap();
                requests.push(req);
            }
            requests
        });
        let params = br#"{"act":{"code":"G"},"cps_serial":"A"}"#;
        let created = c.call_as::<Created>("fse.create", params).unwrap();
        assert_eq!(created.map(|c| c.id).ok(), Some(42));
        let refused = c.call_as::<Created>("fse.create", params).unwrap();
        assert_eq!(
            refused.err().map(|e| error_key(&e)).as_deref(),
            Some("UNKNOWN_ACT")
        );
        let requests = fsed.join().unwrap();
        for (n, r) in requests.iter().enumerate() {
            assert_eq!(
                *r,
                json!({"jsonrpc": "2.0", "id": n + 1, "method": "fse.create",
                       "params": {"act": {"code": "G"}, "cps_serial": "A"}})
            );
        }
    }
}
