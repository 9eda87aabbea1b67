//! `fsectl`: the command line over fsed's socket API. Every method has a command; results print
//! as tables for people, or as the method's JSON result with `--json`.
//!
//! Exit codes: 0 success; 1 fsed answered an error; 2 usage; 3 fsed is unreachable;
//! 4 `doctor` found a warning; 5 `doctor` found a failure; 6 `transmit --wait` timed out with
//! sheets still unsent; 7 `verify` found damaged rows.
//!
//! With `--host H:PORT` (and `--identity DIR`) a command goes to a remote fsed's network API
//! over mutual TLS; `fsectl enroll` makes that identity.

mod cli;
mod cmd;
mod error;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use fsed_client::Client;
use serde_json::json;

use crate::cli::{Cli, Cmd};
use crate::error::CallError;
use crate::output::pretty;

fn run(cli: Cli) -> Result<(), CallError> {
    if let Cmd::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "fsectl", &mut std::io::stdout());
        return Ok(());
    }
    let j = cli.json;
    if let Cmd::Enroll {
        host,
        code,
        name,
        out,
    } = &cli.command
    {
        return cmd::enroll(j, host, code, name, out);
    }
    let connected = match &cli.remote {
        Some(remote) => cmd::connect_remote(remote, &cli.identity),
        None => Client::connect(&cli.socket).map_err(CallError::from),
    };
    let mut c = match (connected, &cli.command) {
        (Ok(c), _) => c,
        (Err(CallError::Unreachable(e)), Cmd::Doctor { database, .. }) if cli.remote.is_none() => {
            return cmd::offline_doctor(&e, database, j)
        }
        (Err(e), _) => return Err(e),
    };
    let c = &mut c;
    match cli.command {
        Cmd::Completions { .. } | Cmd::Enroll { .. } => Ok(()),
        Cmd::Workstations(sub) => cmd::workstations(c, j, sub),
        Cmd::Status {
            sheet: None,
            number: None,
        } => cmd::status(c, j),
        Cmd::Status { sheet, number } => cmd::sheet_status(c, j, sheet, number),
        Cmd::Payments {
            overdue,
            csv,
            from,
            to,
            as_of,
        } => cmd::payments(
            c,
            j,
            cmd::PaymentsArgs {
                overdue,
                csv,
                from,
                to,
                as_of,
            },
        ),
        Cmd::Version => cmd::version(c, j),
        Cmd::Doctor { thorough, database } => cmd::doctor_or_offline(c, j, thorough, &database),
        Cmd::Verify => cmd::verify(c, j),
        Cmd::Backup { file } => cmd::backup(c, j, &file),
        Cmd::Cards(sub) => cmd::cards(c, j, sub),
        Cmd::Vitale(sub) => cmd::vitale(c, j, sub),
        Cmd::Fse(sub) => cmd::fse(c, j, sub),
        Cmd::Lots(sub) => cmd::lots(c, j, sub),
        Cmd::Transmit { wait, timeout } => cmd::transmit(c, j, wait, timeout),
        Cmd::Returns { lot, limit } => cmd::returns(c, j, lot, limit),
        Cmd::Queue(sub) => cmd::queue(c, j, sub),
        Cmd::Events { count, only } => cmd::events(c, j, count, only),
        Cmd::Call { method, params } => {
            let p = match params {
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| CallError::Exit(format!("params are not JSON: {e}"), 2))?,
                None => json!({}),
            };
            pretty(&c.call(&method, p)?);
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CallError::Unreachable(m)) => {
            eprintln!("fsectl: {m}");
            ExitCode::from(3)
        }
        Err(CallError::Exit(m, code)) => {
            eprintln!("fsectl: {m}");
            ExitCode::from(code)
        }
        Err(CallError::Remote(e)) => {
            let field = e.field().map(|f| format!(" [{f}]")).unwrap_or_default();
            eprintln!("fsectl: {}{field}", e.message);
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
#[path = "../../man/pages.rs"]
mod man_pages;

#[cfg(test)]
mod man_tests {
    use clap::CommandFactory;

    fn names_of(pages: &[(String, String)]) -> Vec<&str> {
        pages.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// daemon/man holds the pages of this very command line (see daemon/man/pages.rs).
    #[test]
    fn man_pages_are_current() {
        // The command is named fsed (`fsectl --version`: see cli.rs); the binary is fsectl.
        let pages = super::man_pages::render(super::cli::Cli::command().name("fsectl"), "1");
        // The command, its 18 subcommands (backup, verify, workstations, enroll and payments
        // among them) and the 21 of its groups: cards (5), vitale (1), fse (7), lots (3),
        // queue (2), workstations (3); 1 + 18 + 21 = 40.
        assert_eq!(pages.len(), 40);
        assert!(names_of(&pages).contains(&"fsectl-payments.1"));
        assert!(names_of(&pages).contains(&"fsectl-backup.1"));
        assert!(names_of(&pages).contains(&"fsectl-verify.1"));
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"fsectl-cards-verify-pin.1"), "{names:?}");
        let problems = super::man_pages::check(&pages, "fsectl", "1");
        assert!(
            problems.is_empty(),
            "{problems:?}: run FSED_WRITE_MAN_PAGES=1 cargo test -p fsed -p fsectl --bins man_pages"
        );
    }
}
