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
//!
//! Layout: `client.rs` connects to fsed's socket (through `fsed_client`) and reads its
//! answers, `scenario.rs` what each practice bills and the requests it sends, `load.rs` the
//! run itself (the practices' threads, the events followed, the wait for lots), `report.rs`
//! its summary.

use std::path::PathBuf;

mod client;
mod load;
mod report;
mod scenario;

pub use load::run;
pub use report::{human, Percentiles, Summary};

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
