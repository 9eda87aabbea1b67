//! `fse-sim scenarios`: the scenario catalogue (`simulator/scenarios/*.toml`, format in its
//! README) run against fsed, each step's outcome compared with what the scenario expects, and
//! the verdicts written as JUnit XML, JSON and a self-contained HTML page.

pub mod compare;
pub mod dates;
pub mod env;
pub mod exec;
mod insurer_loop;
pub mod model;
pub mod report;
pub mod rpc;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

pub use exec::{Mode, Outcome, Status};
pub use model::{load, parse, Scenario, ScenarioError};
pub use report::Run;

/// `fse-sim scenarios` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ScenariosArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ScenariosCmd,
}

/// `fse-sim scenarios` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ScenariosCmd {
    /// Run the scenarios; exit non-zero when one fails.
    Run(RunArgs),
    /// List the scenarios: id, tags, title.
    List(ListArgs),
}

/// Where the scenarios are and which to take.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// The folder of scenario files (`*.toml`).
    #[arg(long, default_value = "simulator/scenarios")]
    pub dir: PathBuf,
    /// Only the scenarios with this id or tag (repeatable).
    #[arg(long)]
    pub filter: Vec<String>,
}

/// `fse-sim scenarios run` options.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Which scenarios.
    #[command(flatten)]
    pub list: ListArgs,
    /// Drive this fsed-compatible socket instead of starting an fsed per scenario (steps
    /// needing the runner's own cards, insurer or faults are skipped).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// The `fsed` program [default: `fsed` beside `fse-sim`].
    #[arg(long)]
    pub fsed: Option<PathBuf>,
    /// Scenarios run at once, each on its own fsed (one at a time with `--socket`).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Folder the scenarios' worlds are made in [default: the temporary folder].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Write the JUnit XML here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the HTML report here.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// Reads every `*.toml` of `dir` (sorted by name), keeping those `filter` names (by id or tag;
/// none: all). Every bad file is an error.
pub fn catalogue(dir: &Path, filter: &[String]) -> Result<Vec<Scenario>, Vec<ScenarioError>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![ScenarioError {
            file: dir.display().to_string(),
            key: "-".into(),
            reason: format!("unreadable folder: {e}"),
        }]
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for f in files {
        match load(&f) {
            Ok(s) => good.push(s),
            Err(e) => bad.push(e),
        }
    }
    let mut seen = std::collections::BTreeMap::new();
    for s in &good {
        if let Some(other) = seen.insert(s.id.clone(), s.file.clone()) {
            bad.push(ScenarioError {
                file: s.file.display().to_string(),
                key: "id".into(),
                reason: format!("{} is the id of {} too", s.id, other.display()),
            });
        }
    }
    if !bad.is_empty() {
        return Err(bad);
    }
    good.retain(|s| filter.is_empty() || filter.iter().any(|f| *f == s.id || s.tags.contains(f)));
    Ok(good)
}

/// `fse-sim scenarios list`: one line per scenario.
pub fn list(args: &ListArgs) -> Result<String, String> {
    let all = catalogue(&args.dir, &args.filter).map_err(errors_text)?;
    Ok(all
        .iter()
        .map(|s| format!("{}\t{}\t{}\n", s.id, s.tags.join(","), s.title))
        .collect())
}

fn errors_text(errors: Vec<ScenarioError>) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `fsed` beside this program.
fn fsed_beside() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let p = exe.with_file_name("fsed");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!("{} missing: build it or give --fsed", p.display()))
    }
}

/// `fse-sim scenarios run`: runs the scenarios `jobs` at a time, writes the reports; the run.
pub fn run(args: &RunArgs) -> Result<Run, String> {
    let scenarios = catalogue(&args.list.dir, &args.list.filter).map_err(errors_text)?;
    let mode = match &args.socket {
        Some(s) => Mode::Socket(s.clone()),
        None => {
            let sim = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
            let fsed = match &args.fsed {
                Some(p) => p.clone(),
                None => fsed_beside()?,
            };
            let base = args
                .work_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir)
                .join(format!("fse-sim-scenarios-{}", std::process::id()));
            std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
            Mode::Own {
                tools: env::Tools { fsed, sim },
                base,
            }
        }
    };
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let t = Instant::now();
    // One fsed shared by every scenario: one at a time, so that their sheets do not mix.
    let jobs = match mode {
        Mode::Socket(_) => 1,
        Mode::Own { .. } => args.jobs.max(1),
    };
    let outcomes = run_all(&scenarios, &mode, jobs);
    if let Mode::Own { base, .. } = &mode {
        let _ = std::fs::remove_dir_all(base);
    }
    let ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
    let run = Run::new(started_at, ms, outcomes);
    write_reports(args, &run)?;
    Ok(run)
}

/// Runs `scenarios` on `jobs` threads; the outcomes in the catalogue's order.
fn run_all(scenarios: &[Scenario], mode: &Mode, jobs: usize) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(scenarios.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(s) = scenarios.get(i) else { break };
                let o = exec::run(s, mode, i);
                eprintln!("{:?}\t{}\t{} ms", o.status, o.id, o.ms);
                done.lock().unwrap_or_else(|p| p.into_inner()).push((i, o));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, o)| o).collect()
}

fn write_reports(args: &RunArgs, run: &Run) -> Result<(), String> {
    let write = |path: &Option<PathBuf>, text: String| -> Result<(), String> {
        if let Some(p) = path {
            if let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(())
    };
    write(&args.junit, report::junit(run))?;
    write(
        &args.json,
        serde_json::to_string_pretty(run).map_err(|e| e.to_string())?,
    )?;
    write(&args.html, report::html(run))
}

/// The one-line summary printed at the end of a run.
pub fn summary(run: &Run) -> String {
    let mut s = format!(
        "{} scenarios: {} passed, {} failed, {} skipped in {}.{:03} s",
        run.total,
        run.passed,
        run.failed,
        run.skipped,
        run.ms / 1000,
        run.ms % 1000
    );
    for o in run.scenarios.iter().filter(|o| o.status == Status::Failed) {
        s.push_str(&format!(
            "\nFAILED {}: {}",
            o.id,
            o.message.as_deref().unwrap_or("")
        ));
    }
    s
}

#[cfg(test)]
mod tests;
