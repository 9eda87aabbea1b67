//! `fse-sim replay`: a national peak day through the insurer side.
//!
//! `generate` makes the day's signed lots as fsed makes them — secured sheets proven by each
//! patient's Vitale key, lots per practitioner and destination signed once by the
//! practitioner's CPS with its certificate from the test PKI — and streams them to a file
//! ([`file`]), timed apart. `run` reads the file back through an in-process pipeline: reader →
//! one worker per core (every certificate chain, CPS signature and proof of presence checked,
//! the proofs and the lot signature in one batch, the single checks of the insurer
//! simulator's `judge` for whatever the batch does not accept) → signed ARL and payment return
//! → the consumer (certificate, signature, counts), through bounded channels. It reports
//! sheets/s, lots/s, wall time, peak RSS and the raw Ed25519 rates measured in the same run.
//!
//! Layout: `population` (practitioners and patients from a seed), `generate`, `file`, `batch`
//! (Ed25519 batch verification), `check` (the insurer's work on one lot), `consume`, `rates`,
//! `run` (the pipeline and its report).

use std::path::PathBuf;

use clap::{Args, Subcommand};

pub mod batch;
pub mod check;
pub mod consume;
pub mod file;
pub mod generate;
pub mod population;
pub mod rates;
pub mod run;
#[cfg(test)]
mod tests;

pub use generate::{generate, Damage, Generated};
pub use run::{run, RunOptions, RunReport};

/// `fse-sim replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(subcommand)]
    command: ReplayCmd,
}

#[derive(Debug, Subcommand)]
enum ReplayCmd {
    /// Pre-generate the day's signed lots into a file (timed apart from the run).
    Generate(GenerateArgs),
    /// Push a generated day through the insurer side and the consumer; print the figures.
    Run(RunArgs),
}

/// `fse-sim replay generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Sheets in the day.
    #[arg(long, default_value_t = 20_000)]
    pub sheets: u64,
    /// Practitioners (default: one per 14 sheets, a working day's share).
    #[arg(long)]
    pub practitioners: Option<u64>,
    /// Patients (default: as many as sheets).
    #[arg(long)]
    pub patients: Option<u64>,
    /// Lots damaged on purpose: a bad CPS signature, a sheet changed after signing and a
    /// forged proof of presence, in turn.
    #[arg(long, default_value_t = 0)]
    pub tamper: u64,
    /// Seed of the population.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Day of care, `YYYYMMDD`.
    #[arg(long, default_value = "20261207")]
    pub day: String,
    /// Threads making lots (default: the cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// `fse-sim replay run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The file `generate` wrote.
    #[arg(long = "in")]
    pub input: PathBuf,
    /// Worker threads (default: the cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Seconds each raw Ed25519 rate is measured before the run (0: not measured).
    #[arg(long, default_value_t = 3.0)]
    pub rates_secs: f64,
    /// Where to write the report as JSON (it is printed as well).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The plan of `args`, checked.
pub fn plan_of(args: &GenerateArgs) -> Result<file::Plan, String> {
    if args.sheets == 0 {
        return Err("--sheets: at least 1".into());
    }
    let practitioners = args.practitioners.unwrap_or(args.sheets.div_ceil(14));
    if practitioners == 0 || practitioners > args.sheets {
        return Err(format!(
            "--practitioners: between 1 and the sheets ({}), not {practitioners}",
            args.sheets
        ));
    }
    if args.day.len() != 8 || !args.day.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("--day: YYYYMMDD, not {:?}", args.day));
    }
    if args.tamper > practitioners {
        return Err(format!(
            "--tamper: at most one lot per practitioner ({practitioners}), not {}",
            args.tamper
        ));
    }
    Ok(file::Plan {
        sheets: args.sheets,
        practitioners,
        patients: args.patients.unwrap_or(args.sheets).max(1),
        seed: args.seed,
        day: args.day.clone(),
        tampered: args.tamper,
    })
}

/// Runs `fse-sim replay`: the report's JSON on success.
pub fn run_cli(args: &ReplayArgs) -> Result<String, String> {
    match &args.command {
        ReplayCmd::Generate(g) => {
            let plan = plan_of(g)?;
            let f =
                std::fs::File::create(&g.out).map_err(|e| format!("{}: {e}", g.out.display()))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
            let done = generate(&plan, &mut out, g.threads.unwrap_or_else(cores))?;
            eprintln!(
                "generated {} sheets in {} lots ({} damaged) in {:.1} s: {:.0} sheets/s, {} MB",
                done.summary.sheets,
                done.summary.lots,
                done.summary.tampered_lots,
                done.secs,
                done.sheets_per_sec,
                done.bytes / 1_000_000
            );
            serde_json::to_string(&done).map_err(|e| e.to_string())
        }
        ReplayCmd::Run(r) => {
            let report = run(
                &r.input,
                &RunOptions {
                    workers: r.workers.unwrap_or_else(cores),
                    rates_secs: r.rates_secs,
                },
            )?;
            eprint!("{}", human(&report));
            let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
            if let Some(path) = &r.report {
                std::fs::write(path, &json).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Ok(json)
        }
    }
}

/// A few lines for people.
pub fn human(r: &RunReport) -> String {
    let mut s = format!(
        "replay: {} sheets in {} lots, {:.1} s: {:.0} sheets/s, {:.0} lots/s (8.5 M: {:.0} s; \
         {:.1} CPU s, 8.5 M on idle cores: {:.0} s)\n\
         verified {} sheets ({} lots by batch, {} one by one); consumer: {} ARLs ({} negative), \
         {} payments\npeak RSS {} MiB, {} workers on {} cores, load {} → {}\n",
        r.sheets,
        r.lots,
        r.wall_secs,
        r.sheets_per_sec,
        r.lots_per_sec,
        r.projected_secs_8_5m,
        r.cpu_secs,
        r.projected_idle_secs_8_5m,
        r.sheets_verified,
        r.lots_fast,
        r.lots_single,
        r.consumed.arls,
        r.consumed.arls_negative,
        r.consumed.payments,
        r.peak_rss_kib / 1024,
        r.workers,
        r.cores,
        r.load[0],
        r.load[1]
    );
    if let Some(rates) = &r.rates {
        s.push_str(&format!(
            "raw Ed25519 on {} threads: verify {:.0}/s, batch verify {:.0}/s, sign {:.0}/s\n",
            rates.threads,
            rates.single_verify_per_sec,
            rates.batch_verify_per_sec,
            rates.sign_per_sec
        ));
    }
    s
}
