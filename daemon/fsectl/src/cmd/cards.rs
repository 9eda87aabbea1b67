//! The cards: `fsectl cards …` (the PINs read from standard input, never from the command
//! line) and `fsectl vitale read`.

use std::io::{IsTerminal, Write};

use fsed_client::Client;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::cli::{CardsCmd, VitaleCmd};
use crate::error::CallError;
use crate::output::{cell, print_cards, show, table};

/// `fsectl cards …`.
pub(crate) fn cards(c: &mut Client, j: bool, cmd: CardsCmd) -> Result<(), CallError> {
    match cmd {
        CardsCmd::List => show(j, c.call("cards.list", json!({}))?, &print_cards),
        CardsCmd::VerifyPin { cps_serial } => {
            let pin = secret_line("PIN")?;
            let r = c.call(
                "cards.verify_pin",
                with_serial(json!({"pin": pin.as_str()}), cps_serial),
            )?;
            show(j, r, &|_| println!("PIN verified"));
        }
        CardsCmd::PinStatus { cps_serial } => show(
            j,
            c.call("cards.pin_status", with_serial(json!({}), cps_serial))?,
            &|r| {
                if r["verified"] == json!(true) {
                    println!("PIN verified");
                } else if r["blocked"] == json!(true) {
                    println!("PIN blocked: unblock it with the PUK (fsectl cards unblock-pin)");
                } else {
                    println!("PIN not verified, {} tries left", cell(&r["tries_left"]));
                }
            },
        ),
        CardsCmd::ChangePin { cps_serial } => {
            let old = secret_line("current PIN")?;
            let new = secret_line("new PIN")?;
            let r = c.call(
                "cards.change_pin",
                with_serial(
                    json!({"old_pin": old.as_str(), "new_pin": new.as_str()}),
                    cps_serial,
                ),
            )?;
            show(j, r, &|_| println!("PIN changed"));
        }
        CardsCmd::UnblockPin { cps_serial } => {
            let puk = secret_line("PUK")?;
            let new = secret_line("new PIN")?;
            let r = c.call(
                "cards.unblock_pin",
                with_serial(
                    json!({"puk": puk.as_str(), "new_pin": new.as_str()}),
                    cps_serial,
                ),
            )?;
            show(j, r, &|_| println!("PIN unblocked"));
        }
    }
    Ok(())
}

/// `fsectl vitale …`.
pub(crate) fn vitale(c: &mut Client, j: bool, cmd: VitaleCmd) -> Result<(), CallError> {
    match cmd {
        VitaleCmd::Read => show(j, c.call("vitale.read", json!({}))?, &|r| {
            println!(
                "Vitale card {} — certificate {}",
                cell(&r["serial"]),
                cell(&r["certificate"]["status"])
            );
            let rows: Vec<Vec<String>> = r["beneficiaries"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, b)| {
                    vec![
                        i.to_string(),
                        format!("{} {}", cell(&b["given_name"]), cell(&b["surname"])),
                        cell(&b["birth_date"]),
                        cell(&b["organism"]),
                    ]
                })
                .collect();
            table(&["#", "beneficiary", "born", "organism"], &rows);
        }),
    }
    Ok(())
}

/// Reads one secret line from standard input, without echo handling (pipe or prompt).
fn secret_line(prompt: &str) -> Result<Zeroizing<String>, CallError> {
    if std::io::stdin().is_terminal() {
        eprint!("{prompt}: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CallError::Exit(format!("reading {prompt}: {e}"), 2))?;
    let trimmed = Zeroizing::new(line.trim().to_string());
    if trimmed.is_empty() {
        return Err(CallError::Exit(format!("no {prompt} on standard input"), 2));
    }
    Ok(trimmed)
}

fn with_serial(mut params: Value, cps_serial: Option<String>) -> Value {
    if let Some(s) = cps_serial {
        params["cps_serial"] = json!(s);
    }
    params
}
