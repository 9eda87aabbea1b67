//! Care sheets: `fsectl fse …`.

use fsed_client::Client;
use serde_json::json;

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
    }
    Ok(())
}
