//! How fsectl prints results for people: aligned tables, cells, amounts, and the listings
//! several commands share (cards, queue counts, a sheet); `--json` prints the result as is.

use serde_json::{json, Value};

/// Prints `r` as pretty JSON with `--json` (`json`), else with `human` for people.
pub(crate) fn show(json: bool, r: Value, human: &dyn Fn(&Value)) {
    if json {
        pretty(&r);
    } else {
        human(&r);
    }
}

/// Prints rows as a table with aligned columns.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row.clone());
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

/// A JSON value as a cell: strings bare, null as `-`.
pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Cents as euros: `12.50 €`.
pub(crate) fn money(cents: &Value) -> String {
    let c = cents.as_u64().unwrap_or(0);
    format!("{}.{:02} €", c / 100, c % 100)
}

/// Prints a JSON value, pretty.
pub(crate) fn pretty(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// The cards in the readers, a table.
pub(crate) fn print_cards(cards: &Value) {
    let rows: Vec<Vec<String>> = cards
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let who = if let Some(cps) = c.get("cps") {
                format!(
                    "{} {}",
                    cell(&cps["holder"]["given_name"]),
                    cell(&cps["holder"]["surname"])
                )
            } else if let Some(v) = c.get("vitale") {
                format!(
                    "{} beneficiaries",
                    v["beneficiaries"].as_array().map_or(0, Vec::len)
                )
            } else {
                cell(&c["error"])
            };
            let pin = if c["kind"] == "cps" {
                if c["pin_verified"] == json!(true) {
                    "verified"
                } else {
                    "not verified"
                }
            } else {
                "-"
            };
            vec![
                cell(&c["reader"]),
                cell(&c["kind"]),
                cell(&c["serial"]),
                who,
                pin.to_string(),
                cell(&c["certificate"]["status"]),
                cell(&c["certificate"]["not_after"]),
            ]
        })
        .collect();
    table(
        &[
            "reader",
            "kind",
            "serial",
            "holder",
            "pin",
            "certificate",
            "valid until",
        ],
        &rows,
    );
}

/// `queue.stats`: the non-zero counts, a line per kind.
pub(crate) fn print_stats(stats: &Value) {
    for kind in ["sheets", "lots", "resends", "dead_letters"] {
        let counts: Vec<String> = stats[kind]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.as_u64() != Some(0))
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "{kind}: {}",
            if counts.is_empty() {
                "none".into()
            } else {
                counts.join(", ")
            }
        );
    }
}

/// One sheet: its id, number, state and amounts.
pub(crate) fn print_sheet(r: &Value) {
    let a = &r["sheet"]["amounts"];
    println!(
        "sheet {} (no. {}) {}: total {}, AMO {}, participation {}, patient {}",
        r["id"],
        r["number"],
        cell(&r["state"]),
        money(&a["total_cents"]),
        money(&a["amo_cents"]),
        money(&a["pf_cents"]),
        money(&a["patient_cents"])
    );
}

/// A listing's state cell: the state, or `DAMAGED (why)` for a row fsed does not serve.
pub(crate) fn state_cell(r: &Value) -> String {
    match r["damaged"].as_str() {
        Some(why) => format!("DAMAGED ({why})"),
        None => cell(&r["state"]),
    }
}
