//! Lots and what comes back for them: `fsectl lots …`, `fsectl returns`, `fsectl queue …`.

use fsed_client::Client;
use serde_json::{json, Value};

use crate::cli::{LotsCmd, QueueCmd};
use crate::error::CallError;
use crate::output::{cell, money, pretty, print_stats, show, state_cell, table};

/// `fsectl lots …`.
pub(crate) fn lots(c: &mut Client, j: bool, cmd: LotsCmd) -> Result<(), CallError> {
    match cmd {
        LotsCmd::List => show(j, c.call("lots.list", json!({}))?, &|lots| {
            let rows: Vec<Vec<String>> = lots
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| {
                    vec![
                        cell(&l["id"]),
                        state_cell(l),
                        cell(&l["sheet_count"]),
                        cell(&l["destination"]),
                        cell(&l["closed_at"]),
                    ]
                })
                .collect();
            table(&["lot", "state", "sheets", "destination", "closed"], &rows);
        }),
        LotsCmd::Get { id } => show(j, c.call("lots.get", json!({"lot_id": id}))?, &pretty),
        LotsCmd::Close => show(j, c.call("lots.close", json!({}))?, &|_| {
            println!("open lots closing");
        }),
    }
    Ok(())
}

/// `fsectl returns` (`returns.list`): the ARLs, then the payment returns.
pub(crate) fn returns(
    c: &mut Client,
    j: bool,
    lot: Option<String>,
    limit: Option<usize>,
) -> Result<(), CallError> {
    let mut params = json!({});
    if let Some(l) = lot {
        params["lot_id"] = json!(l);
    }
    if let Some(n) = limit {
        params["limit"] = json!(n);
    }
    show(j, c.call("returns.list", params)?, &|r| {
        let arls: Vec<Vec<String>> = r["arls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                vec![
                    cell(&a["lot_id"]),
                    cell(&a["status"]),
                    cell(&a["received_at"]),
                ]
            })
            .collect();
        table(&["lot", "arl", "received"], &arls);
        let payments: Vec<Vec<String>> = r["payments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                vec![
                    cell(&p["lot_id"]),
                    cell(&p["sheet_id"]),
                    cell(&p["outcome"]),
                    p.get("amount_cents").map(money).unwrap_or("-".into()),
                ]
            })
            .collect();
        println!();
        table(&["lot", "sheet", "payment", "amount"], &payments);
    });
    Ok(())
}

/// `fsectl queue …`.
pub(crate) fn queue(c: &mut Client, j: bool, cmd: QueueCmd) -> Result<(), CallError> {
    match cmd {
        QueueCmd::Stats => show(j, c.call("queue.stats", json!({}))?, &print_stats),
        QueueCmd::Alarms => show(j, c.call("queue.alarms", json!({}))?, &|alarms| {
            let all: Vec<&Value> = alarms.as_array().into_iter().flatten().collect();
            let rows: Vec<Vec<String>> = all
                .iter()
                .filter(|a| a["kind"] != "arl_missing")
                .map(|a| {
                    vec![
                        cell(&a["id"]),
                        cell(&a["number"]),
                        cell(&a["state"]),
                        cell(&a["deadline"]),
                    ]
                })
                .collect();
            table(&["sheet", "number", "state", "deadline"], &rows);
            let lots: Vec<Vec<String>> = all
                .iter()
                .filter(|a| a["kind"] == "arl_missing")
                .map(|a| {
                    vec![
                        cell(&a["lot_id"]),
                        cell(&a["destination"]),
                        cell(&a["sent_at"]),
                        cell(&a["resends"]),
                        if a["given_up"] == true {
                            "given up: ask the insurer".into()
                        } else {
                            "sent again by fsed".into()
                        },
                    ]
                })
                .collect();
            if !lots.is_empty() {
                println!();
                table(
                    &[
                        "lot without ARL",
                        "destination",
                        "last sent",
                        "resends",
                        "state",
                    ],
                    &lots,
                );
            }
        }),
    }
    Ok(())
}
