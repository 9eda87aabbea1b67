//! The scenario file format (`simulator/scenarios/README.md`): parsed from TOML, then checked
//! step by step, so that a bad file is refused with its name, the key at fault and why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A scenario file refused: which file, which key, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// The key at fault (dotted path, e.g. `steps[2].expect.amo_cents`), or `-` for the file.
    pub key: String,
    /// Why it is refused.
    pub reason: String,
}

/// One scenario: the cards, the insurer, fsed's extra configuration and the steps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Stable id (letters, digits, `-`, `_`), unique in the catalogue.
    pub id: String,
    /// One line saying what is shown.
    pub title: String,
    /// The rules and capabilities it covers (refusal rule codes, profiles, `fault`, …).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The cards in the readers at the start.
    #[serde(default)]
    pub cards: Cards,
    /// The insurer's behaviour.
    #[serde(default)]
    pub insurer: InsurerSpec,
    /// fsed's set-up when the runner starts it.
    #[serde(default)]
    pub fsed: FsedSpec,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The file it was read from.
    #[serde(skip)]
    pub file: PathBuf,
}

/// The cards at the start (simulator profiles, or `none`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cards {
    /// Profile in the CPS slot (`none`: empty).
    #[serde(default = "default_cps")]
    pub cps: String,
    /// Profile in the Vitale slot (`none`: empty).
    #[serde(default = "default_vitale")]
    pub vitale: String,
    /// The CPS PIN the runner verifies once the cards are in (`""`: none verified).
    #[serde(default = "default_pin")]
    pub pin: String,
    /// Time each simulated signature takes, in milliseconds (room for a card pulled during it).
    #[serde(default)]
    pub signature_latency_ms: u64,
}

fn default_cps() -> String {
    "cps-medecin-generaliste".into()
}
fn default_vitale() -> String {
    "vitale-famille".into()
}
fn default_pin() -> String {
    "1234".into()
}

impl Default for Cards {
    fn default() -> Self {
        Cards {
            cps: default_cps(),
            vitale: default_vitale(),
            pin: default_pin(),
            signature_latency_ms: 0,
        }
    }
}

/// The insurer simulator's knobs, and how the runner delivers its returns.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsurerSpec {
    /// No insurer at all: lots stay sent.
    #[serde(default)]
    pub absent: bool,
    /// Refuse every sheet of the first N lots (`TEST_REJECTED`: a negative ARL).
    #[serde(default)]
    pub reject_lots: u64,
    /// Send a payment return after each ARL.
    #[serde(default)]
    pub payments: bool,
    /// Refuse this share of sheets in payment returns, in percent (`TEST_REFUSED`).
    #[serde(default)]
    pub refuse_payments_percent: u32,
    /// Deliver every return twice (a duplicated ARL and payment).
    #[serde(default)]
    pub duplicate_replies: bool,
    /// Lose the first N ARLs (never delivered; fsed sends the lot again after its timeout).
    #[serde(default)]
    pub lose_arls: u32,
    /// Hold every return until a `release_insurer` fault (a late ARL).
    #[serde(default)]
    pub hold: bool,
    /// Precede every return with a malformed copy (cut short), which fsed must dead-letter.
    #[serde(default)]
    pub malformed_replies: bool,
    /// Deliver each return this many milliseconds after the insurer made it.
    #[serde(default)]
    pub reply_delay_ms: u64,
    /// The key returns are signed with: `current`, `rotated` (a new key the insurer CA
    /// certified) or `self_signed` (a certificate no CA fsed trusts made).
    #[serde(default)]
    pub key: InsurerKey,
}

/// The key an insurer signs its returns with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InsurerKey {
    /// Its usual key and certificate.
    #[default]
    Current,
    /// A new key, certified by the insurer CA (a key rotation).
    Rotated,
    /// A new key under a self-signed certificate.
    SelfSigned,
}

/// fsed's set-up when the runner starts it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsedSpec {
    /// Extra TOML for fsed's configuration file.
    #[serde(default)]
    pub config: String,
    /// fsed's data directory on a tmpfs of this many MiB (needs root; else the scenario is skipped).
    #[serde(default)]
    pub tmpfs_mb: u32,
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `fse.create` with `params`.
    Create,
    /// Any method with `params`.
    Call,
    /// `cards.verify_pin` with `pin`.
    Pin,
    /// Put `profile` in `slot`.
    Insert,
    /// Take the card out of `slot`.
    Remove,
    /// Wait for `event` (its fields in `expect.fields`).
    Wait,
    /// A fault: `fault`.
    Fault,
}

/// A fault a step injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The card simulator stops (its slots go away) and starts again with the same cards.
    RestartReader,
    /// The spool outbox cannot be written (a file stands in its place).
    TransportDown,
    /// The spool outbox is back.
    TransportUp,
    /// fsed's data directory's file system is filled.
    DiskFull,
    /// The filler is removed.
    DiskFree,
    /// The insurer's held returns are delivered.
    ReleaseInsurer,
}

/// One step and its expected outcome.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What it does.
    #[serde(rename = "do")]
    pub action: Action,
    /// A label for reports.
    #[serde(default)]
    pub name: Option<String>,
    /// `call`: the method.
    #[serde(default)]
    pub method: Option<String>,
    /// `create`, `call`: the parameters (dates may be `today`, `today-N`, `today+N`).
    #[serde(default)]
    pub params: Option<toml::Table>,
    /// `insert`, `remove`, `create` with `pull_after_ms`: `cps` or `vitale`.
    #[serde(default)]
    pub slot: Option<String>,
    /// `insert`: the profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// `pin`: the PIN.
    #[serde(default)]
    pub pin: Option<String>,
    /// `wait`: the event's name.
    #[serde(default)]
    pub event: Option<String>,
    /// `wait`: how long, in milliseconds (default 10,000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `fault`: which.
    #[serde(default)]
    pub fault: Option<Fault>,
    /// `create`: pull the card of `slot` once it has been working on one command this many
    /// milliseconds (the middle of a signature when signatures are slow).
    #[serde(default)]
    pub pull_after_ms: Option<u64>,
    /// The expected outcome.
    #[serde(default)]
    pub expect: Expect,
}

/// What a step must give. Absent keys are not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The call succeeds (`true`) or fails (`false`).
    pub ok: Option<bool>,
    /// The error's `data.name`, e.g. `RULE_VIOLATION`.
    pub error: Option<String>,
    /// The error's `data.rule`.
    pub rule: Option<String>,
    /// The error's `data.field`.
    pub field: Option<String>,
    /// The sheet's `state`.
    pub state: Option<String>,
    /// `sheet.amounts.total_cents`.
    pub total_cents: Option<i64>,
    /// `sheet.amounts.amo_cents`.
    pub amo_cents: Option<i64>,
    /// `sheet.amounts.amc_cents`.
    pub amc_cents: Option<i64>,
    /// `sheet.amounts.patient_cents`.
    pub patient_cents: Option<i64>,
    /// `sheet.amounts.pf_cents` (the participation forfaitaire).
    pub pf_cents: Option<i64>,
    /// `sheet.amounts.due_cents`.
    pub due_cents: Option<i64>,
    /// `sheet.amounts.excess_cents`.
    pub excess_cents: Option<i64>,
    /// Other members of the result by dotted path (`sheet.cover.css`, `acts.0.rate`).
    #[serde(default)]
    pub result: BTreeMap<String, toml::Value>,
    /// Members of the result (dotted paths) that must be absent, e.g. `["0"]`: an empty list.
    #[serde(default)]
    pub absent: Vec<String>,
    /// `wait`: the event's fields.
    #[serde(default)]
    pub fields: BTreeMap<String, toml::Value>,
}

impl Step {
    /// Its label: `name`, else what it does.
    pub fn label(&self, index: usize) -> String {
        let what = match self.action {
            Action::Create => "create".to_string(),
            Action::Call => format!("call {}", self.method.as_deref().unwrap_or("?")),
            Action::Pin => "pin".into(),
            Action::Insert => format!("insert {}", self.profile.as_deref().unwrap_or("?")),
            Action::Remove => format!("remove {}", self.slot.as_deref().unwrap_or("?")),
            Action::Wait => format!("wait {}", self.event.as_deref().unwrap_or("?")),
            Action::Fault => format!(
                "fault {}",
                self.fault
                    .and_then(|f| serde_json::to_value(f).ok())
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "?".into())
            ),
        };
        match &self.name {
            Some(n) => format!("steps[{index}] {n}"),
            None => format!("steps[{index}] {what}"),
        }
    }

    /// Whether it needs the runner's own cards, insurer or fsed (skipped on a given socket).
    pub fn needs_own(&self) -> bool {
        matches!(self.action, Action::Insert | Action::Remove | Action::Fault)
            || self.pull_after_ms.is_some()
    }
}

/// Reads and checks one scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        key: "-".into(),
        reason: format!("unreadable: {e}"),
    })?;
    let mut s = parse(&file, &text)?;
    s.file = path.to_path_buf();
    Ok(s)
}

/// Parses and checks a scenario's text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let err = |key: String, reason: String| ScenarioError {
        file: file.to_string(),
        key,
        reason,
    };
    let s: Scenario = toml::from_str(text).map_err(|e| {
        let (key, reason) = toml_error_key(text, &e);
        err(key, reason)
    })?;
    check(&s).map_err(|(k, r)| err(k, r))?;
    Ok(s)
}

/// The key a TOML error names, as a dotted path (`steps[1].expect.amo_cent`): the table the
/// error's line is in, the key on that line, and the word in backticks of serde's message;
/// and the reason on one line, with the line number.
fn toml_error_key(text: &str, e: &toml::de::Error) -> (String, String) {
    let msg = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else {
        return ("-".into(), msg);
    };
    let before = text.get(..span.start).unwrap_or("");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text
        .get(line_start..)
        .and_then(|t| t.lines().next())
        .unwrap_or("");
    let line_key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.starts_with('['));
    let ticked = msg
        .split('`')
        .nth(1)
        .filter(|_| msg.contains("field"))
        .map(str::to_string);
    let mut key = match (line_key, ticked) {
        (Some(l), Some(t)) if l != t => format!("{l}.{t}"),
        (Some(l), _) => l,
        (None, Some(t)) => t,
        (None, None) => String::new(),
    };
    // The table the line is in: the last header above it.
    let headers: Vec<&str> = before
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .collect();
    if let Some(h) = headers.last() {
        let table = if *h == "[[steps]]" {
            let n = headers.iter().filter(|h| **h == "[[steps]]").count();
            format!("steps[{}]", n.saturating_sub(1))
        } else {
            h.trim_matches(|c| c == '[' || c == ']').to_string()
        };
        key = if key.is_empty() {
            table
        } else {
            format!("{table}.{key}")
        };
    }
    if key.is_empty() {
        key = "-".into();
    }
    let line_no = before.matches('\n').count() + 1;
    (key, format!("{msg} (line {line_no})"))
}

fn check(s: &Scenario) -> Result<(), (String, String)> {
    if s.id.is_empty()
        || !s
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err((
            "id".into(),
            "letters, digits, `-` and `_` only, not empty".into(),
        ));
    }
    if s.steps.is_empty() {
        return Err(("steps".into(), "at least one step".into()));
    }
    for (i, step) in s.steps.iter().enumerate() {
        check_step(step).map_err(|(k, r)| (format!("steps[{i}].{k}"), r))?;
    }
    Ok(())
}

fn check_step(step: &Step) -> Result<(), (String, String)> {
    let need = |v: bool, key: &str| {
        if v {
            Ok(())
        } else {
            Err((
                key.to_string(),
                format!("required by do = {:?}", step.action),
            ))
        }
    };
    match step.action {
        Action::Create => {}
        Action::Call => need(step.method.is_some(), "method")?,
        Action::Pin => need(step.pin.is_some(), "pin")?,
        Action::Insert => {
            need(step.profile.is_some(), "profile")?;
            need(step.slot.is_some(), "slot")?;
        }
        Action::Remove => need(step.slot.is_some(), "slot")?,
        Action::Wait => need(step.event.is_some(), "event")?,
        Action::Fault => need(step.fault.is_some(), "fault")?,
    }
    if let Some(slot) = &step.slot {
        if slot_index(slot).is_none() {
            return Err(("slot".into(), format!("{slot:?}: `cps` or `vitale`")));
        }
    }
    if step.pull_after_ms.is_some() && step.slot.is_none() {
        return Err(("slot".into(), "required with pull_after_ms".into()));
    }
    Ok(())
}

/// A slot's index in the card simulator: `cps` 0, `vitale` 1.
pub fn slot_index(slot: &str) -> Option<usize> {
    match slot {
        "cps" | "0" => Some(0),
        "vitale" | "1" => Some(1),
        _ => None,
    }
}
