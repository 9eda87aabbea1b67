//! The network API: `workstations pair|list|revoke` on the fsed host, `enroll` on a
//! workstation, and the connection of `--host`/`--identity`.

use std::path::Path;
use std::time::Duration;

use fsed_client::enroll::{enroll as exchange, Request};
use fsed_client::tls::Identity;
use fsed_client::Client;
use serde_json::json;

use crate::cli::WorkstationsCmd;
use crate::error::CallError;
use crate::output::{cell, show, table};

/// A client of the remote fsed at `host` with the identity in `dir`.
pub(crate) fn connect_remote(host: &str, dir: &Path) -> Result<Client, CallError> {
    let identity = Identity::load(dir).map_err(|e| {
        CallError::Exit(
            format!("identity: {e} (enroll first: fsectl enroll --host … --code … --name …)"),
            2,
        )
    })?;
    Ok(Client::connect_tls(host, &identity)?)
}

/// `fsectl workstations …`.
pub(crate) fn workstations(c: &mut Client, j: bool, sub: WorkstationsCmd) -> Result<(), CallError> {
    match sub {
        WorkstationsCmd::Pair { name, valid_secs } => {
            let mut p = json!({ "name": name });
            if let Some(s) = valid_secs {
                p["valid_secs"] = json!(s);
            }
            show(j, c.call("workstations.pair", p)?, &|r| {
                println!("code:             {}", cell(&r["code"]));
                println!("expires at:       {}", cell(&r["expires_at"]));
                println!("enroll address:   {}", cell(&r["enroll_address"]));
                println!("CA fingerprint:   {}", cell(&r["ca_fingerprint"]));
                println!(
                    "on the workstation: fsectl enroll --host {} --name {} --code {}",
                    cell(&r["enroll_address"]),
                    name,
                    cell(&r["code"])
                );
            });
        }
        WorkstationsCmd::List => {
            show(j, c.call("workstations.list", json!({}))?, &|r| {
                let rows: Vec<Vec<String>> = r["workstations"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|w| {
                        vec![
                            cell(&w["name"]),
                            cell(&w["fingerprint"]).chars().take(16).collect(),
                            cell(&w["not_after"]),
                            cell(&w["revoked_at"]),
                            cell(&w["connections"]),
                        ]
                    })
                    .collect();
                table(
                    &["NAME", "FINGERPRINT", "NOT AFTER", "REVOKED", "CONNECTIONS"],
                    &rows,
                );
            });
        }
        WorkstationsCmd::Revoke { name } => {
            show(
                j,
                c.call("workstations.revoke", json!({ "name": name }))?,
                &|r| {
                    println!(
                        "{}: {} certificate(s) revoked",
                        cell(&r["name"]),
                        r["revoked"]
                    )
                },
            );
        }
    }
    Ok(())
}

/// `fsectl enroll`: the exchange, then the identity written to `out`.
pub(crate) fn enroll(
    j: bool,
    host: &str,
    code: &str,
    name: &str,
    out: &Path,
) -> Result<(), CallError> {
    let request = Request {
        enroll_address: host,
        host,
        name,
        code,
        timeout: Duration::from_secs(30),
    };
    let identity = exchange(&request)?;
    identity
        .save(out)
        .map_err(|e| CallError::Exit(format!("identity: {e}"), 1))?;
    show(
        j,
        json!({
            "name": identity.name, "host": identity.host, "out": out.display().to_string(),
            "fingerprint": identity.fingerprint(), "ca_fingerprint": identity.ca_fingerprint(),
        }),
        &|r| {
            println!(
                "enrolled as {} with {}: identity in {}",
                cell(&r["name"]),
                cell(&r["host"]),
                cell(&r["out"])
            );
            println!("certificate fingerprint: {}", cell(&r["fingerprint"]));
            println!("CA fingerprint:          {}", cell(&r["ca_fingerprint"]));
        },
    );
    Ok(())
}
