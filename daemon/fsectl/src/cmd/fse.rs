//! Care sheets: `fsectl fse …`.

use std::io::Write;
use std::path::PathBuf;

use fsed_client::Client;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::cli::FseCmd;
use crate::error::CallError;
use crate::output::{cell, pretty, print_sheet, show, state_cell, table};

/// `fsectl fse …`.
pub(crate) fn fse(c: &mut Client, j: bool, cmd: FseCmd) -> Result<(), CallError> {
    match cmd {
        FseCmd::Create {
            code,
            coefficient,
            date,
            beneficiary,
            situation,
            idempotency_key,
        } => {
            let mut act = json!({"code": code, "coefficient": coefficient});
            if let Some(d) = date {
                act["date"] = json!(d);
            }
            let mut params =
                json!({"act": act, "beneficiary": beneficiary, "situation": situation});
            if let Some(k) = idempotency_key {
                params["idempotency_key"] = json!(k);
            }
            show(j, c.call("fse.create", params)?, &print_sheet);
        }
        FseCmd::Get { id } => show(j, c.call("fse.get", json!({"id": id}))?, &|r| {
            print_sheet(r);
            println!(
                "lot {}{}",
                cell(&r["lot_id"]),
                r["reason"]
                    .as_str()
                    .map(|s| format!(", {s}"))
                    .unwrap_or_default()
            );
        }),
        FseCmd::List {
            state,
            limit,
            after_id,
        } => {
            let mut params = json!({"limit": limit, "after_id": after_id});
            if let Some(s) = state {
                params["state"] = json!(s);
            }
            show(j, c.call("fse.list", params)?, &|rows| {
                let rows: Vec<Vec<String>> = rows
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        vec![
                            cell(&r["id"]),
                            cell(&r["number"]),
                            state_cell(r),
                            cell(&r["destination"]),
                            cell(&r["lot_id"]),
                        ]
                    })
                    .collect();
                table(&["id", "number", "state", "destination", "lot"], &rows);
            });
        }
        FseCmd::Cancel { id, reason } => show(
            j,
            c.call("fse.cancel", json!({"id": id, "reason": reason}))?,
            &|r| println!("sheet {} {}", r["id"], cell(&r["state"])),
        ),
        FseCmd::Resubmit { id } => {
            show(j, c.call("fse.resubmit", json!({"id": id}))?, &print_sheet)
        }
        FseCmd::Proof { id } => show(j, c.call("fse.proof", json!({"id": id}))?, &pretty),
        FseCmd::Duplicate { id, reason, out } => duplicate(c, j, id, reason, out)?,
    }
    Ok(())
}

/// `fsectl fse duplicate`: the duplicate written by fsed, then copied to `out` when asked.
fn duplicate(
    c: &mut Client,
    j: bool,
    id: i64,
    reason: Option<String>,
    out: Option<PathBuf>,
) -> Result<(), CallError> {
    let mut params = json!({ "id": id });
    if let Some(r) = reason {
        params["reason"] = json!(r);
    }
    let r = c.call("fse.duplicate", params)?;
    let Some(out) = out else {
        show(j, r, &|r| {
            println!(
                "sheet {} ({}): {} ({} bytes, sha256 {})",
                r["id"],
                cell(&r["lot_id"]),
                cell(&r["path"]),
                r["size"],
                cell(&r["sha256"])
            )
        });
        return Ok(());
    };
    let path = r["path"].as_str().unwrap_or_default();
    let bytes = std::fs::read(path).map_err(|e| {
        CallError::Exit(
            format!("{path}: {e} (the duplicate is on fsed's host, readable by the fsed group)"),
            1,
        )
    })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if r["sha256"].as_str() != Some(sha256.as_str()) {
        return Err(CallError::Exit(
            format!("{path}: changed since fsed wrote it (sha256 {sha256}); ask again"),
            1,
        ));
    }
    if out.as_os_str() == "-" {
        return std::io::stdout()
            .write_all(&bytes)
            .and_then(|()| std::io::stdout().flush())
            .map_err(|e| CallError::Exit(format!("standard output: {e}"), 1));
    }
    std::fs::write(&out, &bytes)
        .map_err(|e| CallError::Exit(format!("{}: {e}", out.display()), 2))?;
    show(j, r, &|r| {
        println!(
            "sheet {} ({}): {} ({} bytes, sha256 {})",
            r["id"],
            cell(&r["lot_id"]),
            out.display(),
            r["size"],
            cell(&r["sha256"])
        )
    });
    Ok(())
}
