//! `fsed`: the daemon. `fsed` runs the service; `fsed check-config` checks
//! the configuration (every problem, each with its key) and exits. Flags win
//! over `FSED_` environment variables, which win over the file, which wins
//! over the defaults (see `daemon/CONFIG.md`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fse_formats::vpcd::Endpoint;
use fsed::config::{CardBackend, Config, ConfigError, ConfigErrors, Sources, TransportKind};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// mimalloc: fse.create allocates many small, short-lived strings and buffers on several
/// threads, where it costs less CPU per sheet than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// fsed — care sheets from the CPS and the Vitale card to the insurers.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration file.
    #[arg(long, default_value = "/etc/fsed/fsed.toml")]
    config: PathBuf,
    /// State directory (database, spool).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// API socket path.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Trust directory: `root.pem` (trusted roots), `ca.pem` (intermediate CAs), `crl.pem` (revocation and opposition lists).
    #[arg(long)]
    trust_dir: Option<PathBuf>,
    /// Card backend: `pcsc` or `virtual`.
    #[arg(long, value_parser = parse_backend)]
    cards: Option<CardBackend>,
    /// Virtual reader slot: `host:port` (as vpcd) or `unix:/path` (repeat per slot).
    #[arg(long = "virtual-slot")]
    virtual_slots: Vec<Endpoint>,
    /// Transport: `spool` or `amqp`.
    #[arg(long, value_parser = parse_transport)]
    transport: Option<TransportKind>,
    /// Spool outbox directory.
    #[arg(long)]
    spool_outbox: Option<PathBuf>,
    /// Spool inbox directory.
    #[arg(long)]
    spool_inbox: Option<PathBuf>,
    /// AMQP return queue name.
    #[arg(long)]
    return_queue: Option<String>,
    /// Sheets per lot.
    #[arg(long)]
    lot_max_sheets: Option<usize>,
    /// Lot age limit in seconds.
    #[arg(long)]
    lot_max_age_secs: Option<u64>,
    /// What is logged: a level or directives (`info,fsed::batcher=debug`).
    #[arg(long)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the configuration (file, environment, flags), the trust directory and the
    /// database (opened read-only, never created or changed: quick check, schema version, and
    /// its high-water mark), print every problem with its key, and exit (0: usable, 2: not,
    /// 3: committed data is missing from the database).
    CheckConfig,
    /// With fsed stopped: put the backup FILE (made by `fsectl backup`) in place of the
    /// database, once checked (integrity, an fsed database); the database it replaces is kept
    /// beside it, the counters never go back, and the high-water mark follows the backup.
    Restore {
        /// The backup file.
        file: PathBuf,
    },
    /// With fsed stopped: accept that the database lacks what its high-water mark says was
    /// committed (fsed refuses to start until then); the counters never go back, and the mark
    /// then follows the database.
    AcceptLoss,
}

fn parse_backend(s: &str) -> Result<CardBackend, String> {
    match s {
        "pcsc" => Ok(CardBackend::Pcsc),
        "virtual" => Ok(CardBackend::Virtual),
        other => Err(format!("unknown card backend {other} (pcsc, virtual)")),
    }
}

fn parse_transport(s: &str) -> Result<TransportKind, String> {
    match s {
        "spool" => Ok(TransportKind::Spool),
        "amqp" => Ok(TransportKind::Amqp),
        other => Err(format!("unknown transport {other} (spool, amqp)")),
    }
}

/// The configuration's sources: the file, the `FSED_` environment, and the flags given.
fn sources(cli: &Cli) -> Sources {
    use toml::Value;
    let explicit = std::env::args().any(|a| a == "--config" || a.starts_with("--config="));
    let mut s = Sources::new(cli.config.clone(), explicit);
    let path = |p: &PathBuf| Value::String(p.display().to_string());
    let text = |t: &str| Value::String(t.to_string());
    let number = |n: u64| Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    if let Some(d) = &cli.state_dir {
        s.flag("state_dir", "--state-dir", path(d));
    }
    if let Some(p) = &cli.socket {
        s.flag("socket", "--socket", path(p));
    }
    if let Some(d) = &cli.trust_dir {
        s.flag("trust_dir", "--trust-dir", path(d));
    }
    if let Some(b) = cli.cards {
        let name = match b {
            CardBackend::Pcsc => "pcsc",
            CardBackend::Virtual => "virtual",
        };
        s.flag("cards.backend", "--cards", text(name));
    }
    if !cli.virtual_slots.is_empty() {
        let slots = cli
            .virtual_slots
            .iter()
            .map(|a| Value::String(a.to_string()))
            .collect();
        s.flag("cards.virtual_slots", "--virtual-slot", Value::Array(slots));
    }
    if let Some(t) = cli.transport {
        let name = match t {
            TransportKind::Spool => "spool",
            TransportKind::Amqp => "amqp",
        };
        s.flag("transport.kind", "--transport", text(name));
    }
    if let Some(p) = &cli.spool_outbox {
        s.flag("transport.spool_outbox", "--spool-outbox", path(p));
    }
    if let Some(p) = &cli.spool_inbox {
        s.flag("transport.spool_inbox", "--spool-inbox", path(p));
    }
    if let Some(q) = &cli.return_queue {
        s.flag("transport.return_queue", "--return-queue", text(q));
    }
    if let Some(n) = cli.lot_max_sheets {
        s.flag("lots.max_sheets", "--lot-max-sheets", number(n as u64));
    }
    if let Some(n) = cli.lot_max_age_secs {
        s.flag("lots.max_age_secs", "--lot-max-age-secs", number(n));
    }
    if let Some(l) = &cli.log_level {
        s.flag("log_level", "--log-level", text(l));
    }
    s
}

/// Starts the logger at `level`; returns how to change the level later. Lines go to standard
/// error, WARN and ERROR lines at most `fsed::logging::PER_WINDOW` a minute per call site (the
/// others counted, then summarised): coloured only on a terminal, and under journald (`$JOURNAL_STREAM`) plain, without
/// a time stamp (the journal has its own) and with a `<N>` priority prefix per level.
fn start_logging(level: &str) -> fsed::service::SetLogLevel {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = !journal && std::io::stderr().is_terminal();
    // Repeated warnings and errors are limited per call site, and summarised with their count.
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(fsed::logging::RateLimit(fsed::logging::global()));
    if journal {
        let format = JournalPriority(tracing_subscriber::fmt::format().without_time());
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::io::stderr)
                    .event_format(format),
            )
            .init();
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .init();
    }
    Box::new(move |level: &str| {
        let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

/// Prefixes each line with its syslog priority (`<3>` error … `<7>` debug), which journald
/// reads from a service's standard error.
struct JournalPriority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for JournalPriority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            tracing::Level::DEBUG | tracing::Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Every problem of `cfg` that only shows when its files are read: the trust directory.
fn check_files(cfg: &Config) -> Vec<ConfigError> {
    let mut out = Vec::new();
    if let Some(dir) = &cfg.trust_dir {
        if let Err(e) = fsed::service::load_trust(dir) {
            out.push(ConfigError::Invalid {
                key: "trust_dir",
                reason: e.to_string(),
            });
        }
    }
    out
}

/// The database, if it exists, opened read-only (never created or changed here): whether it is
/// sound (`PRAGMA quick_check`, fsed's file, a schema version this build knows). `Ok(None)`:
/// no file yet (fsed makes it at its first start).
fn check_database_sound(cfg: &Config) -> Result<Option<String>, ConfigError> {
    let path = cfg.state_path(&cfg.database);
    if !path.exists() {
        return Ok(None);
    }
    match fse_queue::check_file(&path) {
        Ok(found) if found.version < found.latest => Ok(Some(format!(
            "database {}: sound (quick check passed), schema {} (fsed brings it to {} at its next start)",
            path.display(),
            found.version,
            found.latest
        ))),
        Ok(found) => Ok(Some(format!(
            "database {}: sound (quick check passed), schema {}",
            path.display(),
            found.version
        ))),
        Err(e) => Err(ConfigError::Invalid {
            key: "database",
            reason: e.to_string(),
        }),
    }
}

/// The database compared with its high-water mark, read-only: `Err` with the exit code and
/// the message when it cannot be used (3: committed data missing, 2: unreadable or not an
/// fsed database). A database this user may not read is a note, not a failure.
fn check_database_mark(cfg: &Config) -> Result<(), (u8, String)> {
    let db = cfg.state_path(&cfg.database);
    match fsed::mark::check(&db) {
        Ok(_) => Ok(()),
        Err(fsed::mark::CheckError::Lost(lost)) => Err((3, lost.to_string())),
        Err(fsed::mark::CheckError::Queue(
            e
            @ (fse_queue::QueueError::Corrupt { .. } | fse_queue::QueueError::SchemaTooNew { .. }),
        )) => Err((2, e.to_string())),
        Err(e) => {
            eprintln!(
                "fsed: note: database {} not compared with its high-water mark: {e}",
                db.display()
            );
            Ok(())
        }
    }
}

fn report(errors: &ConfigErrors) {
    for e in &errors.0 {
        eprintln!("fsed: {e}");
    }
    let n = errors.0.len();
    eprintln!(
        "fsed: {n} configuration problem{}",
        if n == 1 { "" } else { "s" }
    );
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sources = sources(&cli);
    let cfg = match sources.load() {
        Ok(c) => c,
        Err(errors) => {
            report(&errors);
            return ExitCode::from(2);
        }
    };
    match &cli.command {
        Some(Command::CheckConfig) => {
            let mut problems = check_files(&cfg);
            let database = check_database_sound(&cfg).unwrap_or_else(|e| {
                problems.push(e);
                None
            });
            if !problems.is_empty() {
                report(&ConfigErrors(problems));
                return ExitCode::from(2);
            }
            if let Err((code, message)) = check_database_mark(&cfg) {
                eprintln!("fsed: {message}");
                return ExitCode::from(code);
            }
            if let Some(line) = database {
                println!("{line}");
            }
            println!("configuration OK");
            return ExitCode::SUCCESS;
        }
        Some(Command::Restore { file }) => {
            return offline(fsed::mark::restore(&cfg.state_path(&cfg.database), file));
        }
        Some(Command::AcceptLoss) => {
            return offline(fsed::mark::accept_loss(&cfg.state_path(&cfg.database)));
        }
        None => {}
    }
    let set_log_level = start_logging(&cfg.log_level);
    // Before any other thread starts: it clears the activation variables.
    let activated = match fsed::systemd::activated_listener() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot use the socket passed by systemd");
            eprintln!("fsed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking work is SQLite on two connections, each behind its lock, and spool files:
        // more threads would only wait for those locks, each with its stack and allocator heap
        // (with 64 clients, tokio's default of 512 cost 150 MB of resident memory).
        .max_blocking_threads(8)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fsed: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = fsed::service::Options {
        sources,
        set_log_level,
        activated,
    };
    let result = rt.block_on(fsed::service::run(cfg, options));
    // Blocking work still running (a card exchange, a read) gets a moment, not forever.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "fsed cannot run");
            eprintln!("fsed: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The end of an offline command: its report, or its error and exit code 1.
fn offline(done: Result<String, String>) -> ExitCode {
    match done {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fsed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
#[path = "../../man/pages.rs"]
mod man_pages;

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// daemon/man holds the pages of this very command line (see daemon/man/pages.rs).
    #[test]
    fn man_pages_are_current() {
        let pages = super::man_pages::render(super::Cli::command(), "8");
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "fsed-accept-loss.8",
                "fsed-check-config.8",
                "fsed-restore.8",
                "fsed.8"
            ]
        );
        let problems = super::man_pages::check(&pages, "fsed", "8");
        assert!(
            problems.is_empty(),
            "{problems:?}: run FSED_WRITE_MAN_PAGES=1 cargo test -p fsed --bins man_pages"
        );
    }
}
