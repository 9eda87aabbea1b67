//! Runs one scenario: its world (or a given socket), its set-up, each step and its verdict.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde_json::{json, Value};

use super::compare::{self, Mismatch};
use super::env::{StartError, Tools, World};
use super::model::{slot_index, Action, Fault, Scenario, Step};
use super::rpc::Rpc;

/// Where scenarios run.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Each scenario on its own fsed, cards and insurer, in a folder under `base`.
    Own {
        /// The programs.
        tools: Tools,
        /// The folder the worlds are made in.
        base: PathBuf,
    },
    /// On an fsed-compatible socket already running (steps needing the runner's own cards,
    /// insurer or faults are skipped).
    Socket(PathBuf),
}

/// A verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// As expected.
    Passed,
    /// A mismatch or an error.
    Failed,
    /// Not run here (the reason beside it).
    Skipped,
}

/// One step's verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepOutcome {
    /// `steps[i] …`.
    pub label: String,
    /// Its verdict.
    pub status: Status,
    /// What came (a reply or event, cut), or why it was skipped or failed.
    pub detail: String,
    /// The first mismatch.
    pub mismatch: Option<Mismatch>,
    /// Its time, in milliseconds.
    pub ms: u64,
}

/// One scenario's verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its file.
    pub file: String,
    /// Its verdict.
    pub status: Status,
    /// The failure's message (step, field, expected, got) or the reason for a skip.
    pub message: Option<String>,
    /// The steps run.
    pub steps: Vec<StepOutcome>,
    /// Its time, in milliseconds.
    pub ms: u64,
}

struct Ctx<'a> {
    rpc: Rpc,
    world: Option<&'a mut World>,
    tools: Option<&'a Tools>,
    today: NaiveDate,
}

impl Ctx<'_> {
    fn resolve(&self) -> impl Fn(Value) -> Value {
        let today = self.today;
        move |mut v| {
            super::dates::resolve_all(&mut v, today);
            v
        }
    }
}

fn cut(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(400) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// Runs scenario `s` (the `n`th of the run) in `mode`.
pub fn run(s: &Scenario, mode: &Mode, n: usize) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome {
        id: s.id.clone(),
        title: s.title.clone(),
        tags: s.tags.clone(),
        file: s.file.display().to_string(),
        status: Status::Passed,
        message: None,
        steps: Vec::new(),
        ms: 0,
    };
    let result = match mode {
        Mode::Own { tools, base } => match World::start(s, tools, base, n) {
            Ok(mut world) => {
                let socket = world.socket.clone();
                run_on(s, &socket, Some(&mut world), Some(tools), &mut out)
            }
            Err(StartError::Skip(why)) => {
                out.status = Status::Skipped;
                out.message = Some(why);
                Ok(())
            }
            Err(StartError::Fail(e)) => Err(format!("set-up: {e}")),
        },
        Mode::Socket(path) => run_on(s, path, None, None, &mut out),
    };
    if let Err(e) = result {
        out.status = Status::Failed;
        out.message = Some(e);
    }
    out.ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    out
}

fn run_on(
    s: &Scenario,
    socket: &Path,
    world: Option<&mut World>,
    tools: Option<&Tools>,
    out: &mut Outcome,
) -> Result<(), String> {
    let own = world.is_some();
    let mut rpc = Rpc::connect(socket)?;
    let sub = rpc.call("events.subscribe", &json!({}))?;
    if sub.get("error").is_some() {
        return Err(format!("set-up: events.subscribe: {}", cut(&sub)));
    }
    let mut ctx = Ctx {
        rpc,
        world,
        tools,
        today: chrono::Utc::now().date_naive(),
    };
    setup_cards(s, &mut ctx, own)?;
    // The set-up's own events (the cards coming in) are not the steps' to wait for.
    ctx.rpc.events.clear();
    let mut skipping = false;
    for (i, step) in s.steps.iter().enumerate() {
        let label = step.label(i);
        let t = Instant::now();
        if !own && (skipping || step.needs_own()) {
            // What follows a skipped step expects the state it would have made: skipped too.
            let detail = if skipping {
                "follows a skipped step"
            } else {
                "needs the runner's own cards, insurer or fsed (run without --socket)"
            };
            skipping = true;
            out.steps.push(StepOutcome {
                label,
                status: Status::Skipped,
                detail: detail.into(),
                mismatch: None,
                ms: 0,
            });
            continue;
        }
        let (detail, mismatch) = match run_step(step, &mut ctx) {
            Ok(r) => r,
            Err(e) => (
                e.clone(),
                Some(Mismatch {
                    field: "step".into(),
                    expected: json!("to run"),
                    got: json!(e),
                }),
            ),
        };
        let failed = mismatch.is_some();
        if let Some(m) = &mismatch {
            out.message = Some(format!(
                "{label}: {}: expected {}, got {}",
                m.field, m.expected, m.got
            ));
        }
        out.steps.push(StepOutcome {
            label,
            status: if failed {
                Status::Failed
            } else {
                Status::Passed
            },
            detail,
            mismatch,
            ms: u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
        if failed {
            out.status = Status::Failed;
            return Ok(());
        }
    }
    if !own && out.steps.iter().all(|s| s.status == Status::Skipped) {
        out.status = Status::Skipped;
        out.message = Some("every step needs the runner's own world".into());
    }
    Ok(())
}

/// Waits until fsed lists the scenario's cards (its own world), then verifies the CPS PIN when
/// the scenario gives one.
fn setup_cards(s: &Scenario, ctx: &mut Ctx<'_>, own: bool) -> Result<(), String> {
    let want = [&s.cards.cps, &s.cards.vitale]
        .iter()
        .filter(|p| p.as_str() != "none")
        .count();
    if own {
        wait_cards(ctx, want)?;
    }
    if s.cards.cps != "none" && !s.cards.pin.is_empty() {
        let r = ctx
            .rpc
            .call("cards.verify_pin", &json!({"pin": s.cards.pin}))?;
        if r.get("error").is_some() {
            return Err(format!("set-up: cards.verify_pin: {}", cut(&r)));
        }
    }
    Ok(())
}

/// Waits until fsed lists `want` cards, at most 20 s.
fn wait_cards(ctx: &mut Ctx<'_>, want: usize) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let list = ctx.rpc.call("cards.list", &json!({}))?;
        let n = list["result"].as_array().map_or(0, Vec::len);
        if n >= want {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!("set-up: fsed lists {n} cards of {want} after 20 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Takes the card of `slot` out once it has been working on one command for `busy_for`: the
/// card simulator counts a command as received before its time to answer and as processed
/// after, so one more received than processed, the same command still, is a card in the middle
/// of an operation (a signature, when it is the only slow one). A condition, not a fixed delay
/// after the request: on a busy machine fsed may reach the card late.
fn pull_while_busy(control: &Path, slot: usize, busy_for: Duration) -> Result<(), String> {
    use crate::control::{request, Request};
    let end = Instant::now() + Duration::from_secs(30);
    let mut busy_since: Option<(u64, Instant)> = None;
    loop {
        let stats = request(control, &Request::Stats { slot })?;
        let (received, done) = (
            stats["ok"]["received"].as_u64().unwrap_or(0),
            stats["ok"]["apdus"].as_u64().unwrap_or(0),
        );
        busy_since = match busy_since {
            Some((r, since)) if r == received && received > done => Some((r, since)),
            _ if received > done => Some((received, Instant::now())),
            _ => None,
        };
        if busy_since.is_some_and(|(_, since)| since.elapsed() >= busy_for) {
            return request(control, &Request::Remove { slot }).map(|_| ());
        }
        if Instant::now() >= end {
            return Err(format!(
                "slot {slot}: the card was never busy for {busy_for:?} in 30 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The name fsed gives its embedded virtual reader's slots, followed by the slot's index.
const VIRTUAL_READER: &str = "fsed virtual reader";

type StepResult = Result<(String, Option<Mismatch>), String>;

fn run_step(step: &Step, ctx: &mut Ctx<'_>) -> StepResult {
    match step.action {
        Action::Create | Action::Call => call_step(step, ctx),
        Action::Pin => {
            let pin = step.pin.clone().unwrap_or_default();
            let reply = ctx.rpc.call("cards.verify_pin", &json!({ "pin": pin }))?;
            let m = compare::check_reply(&step.expect, &reply, &ctx.resolve());
            Ok((cut(&reply), m.into_iter().next()))
        }
        Action::Insert | Action::Remove => card_step(step, ctx),
        Action::Wait => {
            let name = step.event.clone().unwrap_or_default();
            let timeout = Duration::from_millis(step.timeout_ms.unwrap_or(10_000));
            wait_step(ctx, &name, timeout, step)
        }
        Action::Fault => fault_step(step, ctx),
    }
}

fn call_step(step: &Step, ctx: &mut Ctx<'_>) -> StepResult {
    let method = match step.action {
        Action::Create => "fse.create".to_string(),
        _ => step.method.clone().unwrap_or_default(),
    };
    let params = step
        .params
        .as_ref()
        .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
        .unwrap_or_else(|| json!({}));
    let mut params = ctx.resolve()(params);
    if let Some(world) = ctx.world.as_deref() {
        world_paths(&mut params, &world.dir.display().to_string());
    }
    let id = ctx.rpc.send(&method, &params)?;
    if let (Some(ms), Some(slot)) = (step.pull_after_ms, step.slot.as_deref()) {
        let world = ctx.world.as_deref().ok_or("no own world")?;
        let slot = slot_index(slot).ok_or("bad slot")?;
        pull_while_busy(&world.control(), slot, Duration::from_millis(ms))?;
    }
    let reply = ctx.rpc.reply(id, Duration::from_secs(30))?;
    let m = compare::check_reply(&step.expect, &reply, &ctx.resolve());
    Ok((cut(&reply), m.into_iter().next()))
}

/// `$WORLD` in the strings of `v` (a path a method takes, such as `queue.backup`'s) becomes
/// the world's folder.
fn world_paths(v: &mut Value, dir: &str) {
    match v {
        Value::String(s) if s.contains("$WORLD") => *s = s.replace("$WORLD", dir),
        Value::Array(items) => items.iter_mut().for_each(|x| world_paths(x, dir)),
        Value::Object(map) => map.values_mut().for_each(|x| world_paths(x, dir)),
        _ => {}
    }
}

fn card_step(step: &Step, ctx: &mut Ctx<'_>) -> StepResult {
    let world = ctx.world.as_deref().ok_or("no own world")?;
    let slot = slot_index(step.slot.as_deref().unwrap_or_default()).ok_or("bad slot")?;
    let (req, event) = match step.action {
        Action::Insert => (
            crate::control::Request::Insert {
                slot,
                profile: step.profile.clone().unwrap_or_default(),
            },
            "card.inserted",
        ),
        _ => (crate::control::Request::Remove { slot }, "card.removed"),
    };
    let answer = crate::control::request(&world.control(), &req)?;
    if let Some(e) = answer.get("error") {
        return Err(format!("card simulator: {e}"));
    }
    if step.action == Action::Remove {
        // fsed's embedded virtual reader sees a card gone at its next exchange with it: one
        // that spends nothing (the CPS's PIN status, a Vitale challenge).
        let (method, params) = if slot == 0 {
            ("cards.pin_status", json!({}))
        } else {
            ("cards.authenticate", json!({"challenge": "07".repeat(32)}))
        };
        ctx.rpc.call(method, &params)?;
    }
    wait_step(ctx, event, Duration::from_secs(10), step)
}

/// Waits up to 10 s for the event `name` of the CPS's slot (slot 0).
fn cps_event(ctx: &mut Ctx<'_>, name: &str) -> StepResult {
    let reader = format!("{VIRTUAL_READER} 0");
    match ctx.rpc.wait_event(name, Duration::from_secs(10), |ev| {
        ev["reader"] == reader.as_str()
    }) {
        Ok(ev) => Ok((cut(&ev), None)),
        Err(seen) => Ok((
            String::new(),
            Some(Mismatch {
                field: format!("event {name}"),
                expected: json!({"event": name, "reader": reader}),
                got: Value::Array(seen),
            }),
        )),
    }
}

fn wait_step(ctx: &mut Ctx<'_>, name: &str, timeout: Duration, step: &Step) -> StepResult {
    let resolve = ctx.resolve();
    let expect = step.expect.clone();
    let wanted = match step.action {
        Action::Wait => expect.fields.clone(),
        // A card step waits for its own slot's event (the other card's may come meanwhile).
        Action::Insert | Action::Remove => step
            .slot
            .as_deref()
            .and_then(slot_index)
            .map(|i| {
                let reader = toml::Value::String(format!("{VIRTUAL_READER} {i}"));
                std::iter::once(("reader".to_string(), reader)).collect()
            })
            .unwrap_or_default(),
        _ => Default::default(),
    };
    let e = super::model::Expect {
        fields: wanted,
        ..Default::default()
    };
    match ctx
        .rpc
        .wait_event(name, timeout, |ev| compare::event_matches(&e, ev, &resolve))
    {
        Ok(ev) => Ok((cut(&ev), None)),
        Err(seen) => {
            let expected = json!({"event": name, "fields": serde_json::to_value(&e.fields).unwrap_or(Value::Null)});
            let got = if seen.is_empty() {
                json!(format!("no {name} event within {} ms", timeout.as_millis()))
            } else {
                Value::Array(seen)
            };
            Ok((
                String::new(),
                Some(Mismatch {
                    field: format!("event {name}"),
                    expected,
                    got,
                }),
            ))
        }
    }
}

fn fault_step(step: &Step, ctx: &mut Ctx<'_>) -> StepResult {
    let tools = ctx.tools.ok_or("no own world")?;
    let world = ctx.world.as_deref_mut().ok_or("no own world")?;
    let spool = world.dir.join("spool");
    let io = |e: std::io::Error| e.to_string();
    match step.fault {
        Some(Fault::RestartReader) => {
            world.stop_cards();
            // The CPS is the card whose loss matters (its PIN is forgotten): fsed's embedded
            // reader sees it gone at its next exchange, so one is made, then its own slot's
            // removal and, once the cards are back, its insertion are waited for.
            ctx.rpc.call("cards.pin_status", &json!({}))?;
            cps_event(ctx, "card.removed")?;
            let world = ctx.world.as_deref_mut().ok_or("no own world")?;
            world.start_cards(tools).map_err(|e| format!("{e:?}"))?;
            cps_event(ctx, "card.inserted")
        }
        Some(Fault::TransportDown) => {
            std::fs::rename(spool.join("outbox"), spool.join("outbox.down")).map_err(io)?;
            std::fs::write(
                spool.join("outbox"),
                b"not a folder: the transport is out\n",
            )
            .map_err(io)?;
            Ok(("spool outbox replaced by a file".into(), None))
        }
        Some(Fault::TransportUp) => {
            std::fs::remove_file(spool.join("outbox")).map_err(io)?;
            std::fs::rename(spool.join("outbox.down"), spool.join("outbox")).map_err(io)?;
            Ok(("spool outbox back".into(), None))
        }
        Some(Fault::DiskFull) => fill(&world.dir.join("filler")),
        Some(Fault::DiskFree) => {
            std::fs::remove_file(world.dir.join("filler")).map_err(io)?;
            Ok(("filler removed".into(), None))
        }
        Some(Fault::ReleaseInsurer) => {
            world.insurer.as_ref().ok_or("no insurer")?.release();
            Ok(("insurer's returns released".into(), None))
        }
        None => Err("no fault named".into()),
    }
}

/// Fills the file system of `path` until it refuses a write.
fn fill(path: &Path) -> StepResult {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let block = vec![0xA5u8; 1 << 20];
    let mut written = 0u64;
    // Whole MiB first, then 4 KiB blocks for what is left.
    for size in [block.len(), 4096] {
        while written < (64 << 30) {
            match f.write(&block[..size]) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
    }
    let _ = f.sync_all();
    Ok((
        format!("{written} bytes written until the file system was full"),
        None,
    ))
}
