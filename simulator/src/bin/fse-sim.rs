//! `fse-sim`: simulated cards (`cards`), insurer (`insurer`) and the demo
//! of fsed on its embedded defaults (`demo`), the load generator (`practice`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the card, insurer and load simulators drive fsed at full speed and should take as
/// little of the machine's CPU as they can.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// fse-sim — card and insurer simulators for fsed.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show the default CPS and Vitale card to a vpcd reader (pcscd's by default).
    Cards(fse_simulator::cards_cmd::CardsArgs),
    /// Answer lots with ARLs, from RabbitMQ or a spool directory.
    Insurer(fse_simulator::insurer::InsurerArgs),
    /// Write the test PKI: root and CA certificates, CRLs (revoked CPS, opposed Vitale cards), and every built-in card's certificate.
    Pki(fse_simulator::pki::PkiArgs),
    /// Run fsed with simulated cards, a spool and the insurer, bill a sample batch, print the outcome.
    Demo(fse_simulator::demo::DemoArgs),
    /// Drive fsed like many practices: create sheets through its socket at a rate, print a summary.
    Practice(fse_simulator::practice::PracticeArgs),
    /// The Vitale app: a presence token bound to fsed's challenge and a practitioner, printed, shown as a QR code (stderr) and written as a PNG.
    App(fse_simulator::app::AppArgs),
    /// Programs sharing one card: clients calling a card method as fast as answered, for a time; prints each one's share and longest wait.
    CardLoad(fse_simulator::card_load::CardLoadArgs),
    /// The scenario catalogue: run scenarios against fsed (JUnit XML, JSON, HTML), or list them.
    Scenarios(fse_simulator::scenarios::ScenariosArgs),
    /// The peak-day replay: pre-generate a day's signed lots, then push them through the insurer side and the consumer.
    Replay(fse_simulator::replay::ReplayArgs),
}

/// `fse-sim pki`: writes the test PKI.
fn pki(args: &fse_simulator::pki::PkiArgs) -> ExitCode {
    match fse_simulator::pki::run(args) {
        Ok(n) => {
            println!(
                "test PKI written to {}: {}, {}, {}, cards/ ({n} card certificates), {}/",
                args.out.display(),
                fse_simulator::pki::ROOT_FILE,
                fse_simulator::pki::CA_FILE,
                fse_simulator::pki::CRL_FILE,
                fse_simulator::pki::INSURERS_DIR
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fse-sim pki: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `fse-sim app`: the token's text on stdout.
fn app(args: &fse_simulator::app::AppArgs) -> ExitCode {
    match fse_simulator::app::run(args) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fse-sim app: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `fse-sim scenarios`: the list, or a run's summary (failure when a scenario fails).
fn scenarios(args: &fse_simulator::scenarios::ScenariosArgs) -> ExitCode {
    use fse_simulator::scenarios::{self as sc, ScenariosCmd};
    match &args.command {
        ScenariosCmd::List(a) => match sc::list(a) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fse-sim scenarios: {e}");
                ExitCode::from(2)
            }
        },
        ScenariosCmd::Run(a) => match sc::run(a) {
            Ok(run) => {
                println!("{}", sc::summary(&run));
                if run.failed == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("fse-sim scenarios: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// `fse-sim replay`: the report's JSON on stdout.
fn replay(args: &fse_simulator::replay::ReplayArgs) -> ExitCode {
    match fse_simulator::replay::run_cli(args) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fse-sim replay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Cmd::Pki(args) = &cli.command {
        return pki(args);
    }
    if let Cmd::Practice(args) = &cli.command {
        return match fse_simulator::practice::run(args) {
            Ok(s) => {
                print!("{}", fse_simulator::practice::human(&s));
                println!("{}", serde_json::to_string(&s).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fse-sim practice: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::App(args) = &cli.command {
        return app(args);
    }
    if let Cmd::CardLoad(args) = &cli.command {
        return match fse_simulator::card_load::run(args) {
            Ok(r) => {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fse-sim card-load: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::Scenarios(args) = &cli.command {
        return scenarios(args);
    }
    if let Cmd::Replay(args) = &cli.command {
        return replay(args);
    }
    if let Cmd::Demo(args) = cli.command {
        return match fse_simulator::demo::run(args) {
            Ok(s) => {
                println!(
                    "sheets created: {}\nlots signed: {}\ntransmitted: {}\nacknowledged: {} lots, {} sheets\nCPS signatures: {}",
                    s.created, s.lots_signed, s.transmitted, s.acknowledged, s.sheets_acknowledged, s.cps_signatures
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fse-sim demo: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fse-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Cmd::Cards(a) => match &a.order {
                Some(order) => fse_simulator::cards_cmd::send(&a.control, order),
                None => fse_simulator::cards_cmd::run(a)
                    .await
                    .map_err(|e| e.to_string()),
            },
            Cmd::Insurer(a) => fse_simulator::insurer::run_cli(a)
                .await
                .map_err(|e| e.to_string()),
            Cmd::Demo(_)
            | Cmd::Pki(_)
            | Cmd::Practice(_)
            | Cmd::CardLoad(_)
            | Cmd::App(_)
            | Cmd::Scenarios(_)
            | Cmd::Replay(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fse-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
