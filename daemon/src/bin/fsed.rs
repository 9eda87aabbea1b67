//! `fsed`: the daemon. `fsed` runs the service; `fsed check-config` checks
//! the configuration and exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fsed::config::{CardBackend, Config, TransportKind};

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
    /// Virtual reader slot address (repeat per slot).
    #[arg(long = "virtual-slot")]
    virtual_slots: Vec<SocketAddr>,
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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the configuration and exit.
    CheckConfig,
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

fn configure(cli: &Cli) -> Result<Config, fsed::config::ConfigError> {
    let explicit = std::env::args().any(|a| a == "--config" || a.starts_with("--config="));
    let mut cfg = Config::load(&cli.config, explicit)?;
    if let Some(d) = &cli.state_dir {
        cfg.state_dir = d.clone();
    }
    if let Some(s) = &cli.socket {
        cfg.socket = s.clone();
    }
    if let Some(d) = &cli.trust_dir {
        cfg.trust_dir = Some(d.clone());
    }
    if let Some(b) = cli.cards {
        cfg.cards.backend = b;
    }
    if !cli.virtual_slots.is_empty() {
        cfg.cards.virtual_slots = cli.virtual_slots.clone();
    }
    if let Some(t) = cli.transport {
        cfg.transport.kind = t;
    }
    if let Some(p) = &cli.spool_outbox {
        cfg.transport.spool_outbox = p.clone();
    }
    if let Some(p) = &cli.spool_inbox {
        cfg.transport.spool_inbox = p.clone();
    }
    if let Some(q) = &cli.return_queue {
        cfg.transport.return_queue = q.clone();
    }
    if let Some(n) = cli.lot_max_sheets {
        cfg.lots.max_sheets = n;
    }
    if let Some(n) = cli.lot_max_age_secs {
        cfg.lots.max_age_secs = n;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FSED_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = match configure(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fsed: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::CheckConfig) = cli.command {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fsed: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fsed::service::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fsed: {e}");
            ExitCode::FAILURE
        }
    }
}
