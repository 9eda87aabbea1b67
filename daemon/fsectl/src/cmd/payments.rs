//! Payment truth: `fsectl status SHEET` (`fse.status`) and `fsectl payments`
//! (`payments.list`, with its CSV for the practice's accountant).
//!
//! The CSV: UTF-8 (its text is ASCII), one header row, `;` between fields and a decimal
//! comma (what a French spreadsheet opens as is), amounts in euros with 2 decimals
//! (`19,00`), dates `YYYY-MM-DD`, lines ending `\r\n` (RFC 4180). It is written to a
//! temporary file beside FILE, synced, renamed over FILE, and the folder synced: a crash
//! leaves the old file or the new one, never half of one.

use std::fs;
use std::io::Write;
use std::path::Path;

use fsed_client::Client;
use serde_json::{json, Value};

use crate::error::CallError;
use crate::output::{cell, money, pretty, show, table};

/// `fsectl status SHEET` / `fsectl status --number N`.
pub(crate) fn sheet_status(
    c: &mut Client,
    j: bool,
    sheet: Option<i64>,
    number: Option<u64>,
) -> Result<(), CallError> {
    let params = match (sheet, number) {
        (Some(id), _) => json!({ "sheet": id }),
        (None, Some(n)) => json!({ "number": n }),
        (None, None) => return Err(CallError::Exit("give a sheet id or --number".into(), 2)),
    };
    show(j, c.call("fse.status", params)?, &|s| {
        println!(
            "sheet {} (number {}): {}",
            s["id"],
            s["number"],
            cell(&s["state"])
        );
        println!("created   {}", cell(&s["created_at"]));
        if let Some(lot) = s["lot"].as_object() {
            let signed = if lot["signed"] == json!(true) {
                ", signed"
            } else {
                ""
            };
            println!(
                "lot       {} ({}{signed})",
                cell(&lot["id"]),
                cell(&lot["state"])
            );
        }
        if let Some(sent) = s["sent"].as_object() {
            println!(
                "sent      {} time(s), last {}",
                sent["times"],
                cell(&sent["last_sent_at"])
            );
        }
        if let Some(arl) = s["arl"].as_object() {
            println!(
                "ARL       {} on {}",
                cell(&arl["status"]),
                cell(&arl["date"])
            );
        }
        if let Some(p) = s["payment"].as_object() {
            let what = p
                .get("amount_cents")
                .map(money)
                .unwrap_or_else(|| cell(&p["code"]));
            println!(
                "payment   {} {what} on {}",
                cell(&p["outcome"]),
                cell(&p["issued_at"])
            );
        }
        let a = &s["amounts"];
        println!(
            "amounts   AMO {}, AMC {}, patient {} (tiers payant AMO {}, AMC {})",
            money(&a["amo_cents"]),
            money(&a["amc_cents"]),
            money(&a["patient_cents"]),
            s["tiers_payant"]["amo"],
            s["tiers_payant"]["amc"]
        );
        if let Some(l) = s["late_payment"].as_object() {
            println!(
                "late      {} working day(s) after the ARL, {}: {} owed",
                l["working_days"],
                cell(&l["rule"]),
                money(&l["penalty_cents"])
            );
        }
        let safe = if s["resend_safe"]["safe"] == json!(true) {
            "safe"
        } else {
            "NOT safe"
        };
        println!("resend    {safe}: {}", cell(&s["resend_safe"]["reason"]));
    });
    Ok(())
}

/// What `fsectl payments` asks.
pub(crate) struct PaymentsArgs {
    /// Only overdue sheets.
    pub overdue: bool,
    /// The CSV to write.
    pub csv: Option<std::path::PathBuf>,
    /// ARL dated on or after (`YYYYMMDD`).
    pub from: Option<String>,
    /// ARL dated on or before (`YYYYMMDD`).
    pub to: Option<String>,
    /// Count unpaid sheets up to this day (`YYYYMMDD`).
    pub as_of: Option<String>,
}

/// `fsectl payments`: the table, the totals per insurer, and the CSV when asked.
pub(crate) fn payments(c: &mut Client, j: bool, a: PaymentsArgs) -> Result<(), CallError> {
    let mut params = json!({ "overdue_only": a.overdue });
    for (k, v) in [("from", &a.from), ("to", &a.to), ("as_of", &a.as_of)] {
        if let Some(v) = v {
            params[k] = json!(v);
        }
    }
    let r = c.call("payments.list", params)?;
    if let Some(file) = &a.csv {
        write_durably(file, csv(&r).as_bytes())
            .map_err(|e| CallError::Exit(format!("writing {}: {e}", file.display()), 4))?;
    }
    if j {
        pretty(&r);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = lines(&r)
        .map(|s| {
            vec![
                cell(&s["number"]),
                cell(&s["lot_id"]),
                cell(&s["insurer"]),
                cell(&s["arl_date"]),
                cell(&s["paid_date"]),
                cell(&s["working_days"]),
                money(&s["amo_cents"]),
                cell(&s["rule"]),
                money(&s["penalty_cents"]),
                if s["overdue"] == json!(true) {
                    "OVERDUE".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    table(
        &[
            "sheet", "lot", "insurer", "ARL", "paid", "days", "AMO", "rule", "penalty", "",
        ],
        &rows,
    );
    println!();
    let totals: Vec<Vec<String>> = r["totals"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                cell(&t["insurer"]),
                cell(&t["sheets"]),
                money(&t["amo_cents"]),
                money(&t["paid_cents"]),
                money(&t["penalty_cents"]),
                cell(&t["overdue"]),
            ]
        })
        .collect();
    table(
        &["insurer", "sheets", "AMO", "paid", "penalties", "overdue"],
        &totals,
    );
    if let Some(file) = &a.csv {
        println!("\nwritten: {}", file.display());
    }
    Ok(())
}

/// The sheets of a `payments.list` answer.
fn lines(r: &Value) -> impl Iterator<Item = &Value> {
    r["sheets"].as_array().into_iter().flatten()
}

/// The header of the CSV.
pub(crate) const CSV_HEADER: &str = "sheet_id;number;lot;insurer;arl_date;paid_date;working_days;amo_eur;paid_eur;rule;penalty_eur;overdue";

/// Cents as euros with a decimal comma and no unit: `1900` → `19,00`.
fn euros(cents: &Value) -> String {
    let c = cents.as_u64().unwrap_or(0);
    format!("{},{:02}", c / 100, c % 100)
}

/// `YYYYMMDD` as `YYYY-MM-DD`; empty for null.
fn iso_date(v: &Value) -> String {
    match v.as_str() {
        Some(d) if d.len() == 8 && d.is_ascii() => format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]),
        Some(d) => d.to_string(),
        None => String::new(),
    }
}

/// A text field of the CSV: fsed's ids and codes hold no `;`, `"` or line break, but a
/// field that did is quoted (RFC 4180).
fn field(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.contains([';', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The CSV of a `payments.list` answer.
pub(crate) fn csv(r: &Value) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    for s in lines(r) {
        let cols = [
            field(&s["id"]),
            field(&s["number"]),
            field(&s["lot_id"]),
            field(&s["insurer"]),
            iso_date(&s["arl_date"]),
            iso_date(&s["paid_date"]),
            field(&s["working_days"]),
            euros(&s["amo_cents"]),
            euros(&s["paid_cents"]),
            field(&s["rule"]),
            euros(&s["penalty_cents"]),
            if s["overdue"] == json!(true) {
                "yes"
            } else {
                "no"
            }
            .to_string(),
        ];
        out.push_str(&cols.join(";"));
        out.push_str("\r\n");
    }
    out
}

/// Writes `bytes` to `file` durably: a temporary file beside it, synced, renamed over it,
/// then the folder synced.
fn write_durably(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, file)?;
        fs::File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_has_a_header_semicolons_and_decimal_commas() {
        let r = json!({"sheets": [
            {"id": 1, "number": 1, "lot_id": "810000000009-00000001", "insurer": "017510001",
             "arl_date": "20261204", "paid_date": "20261216", "working_days": 8,
             "amo_cents": 1900, "paid_cents": 1900, "rule": "flat_1_eur", "penalty_cents": 100,
             "overdue": false},
            {"id": 2, "number": 2, "lot_id": "810000000009-00000001", "insurer": "017510001",
             "arl_date": "20261204", "paid_date": null, "working_days": 11,
             "amo_cents": 2645, "paid_cents": 0, "rule": "ten_percent", "penalty_cents": 265,
             "overdue": true}
        ]});
        assert_eq!(
            csv(&r),
            format!(
                "{CSV_HEADER}\r\n\
                 1;1;810000000009-00000001;017510001;2026-12-04;2026-12-16;8;19,00;19,00;flat_1_eur;1,00;no\r\n\
                 2;2;810000000009-00000001;017510001;2026-12-04;;11;26,45;0,00;ten_percent;2,65;yes\r\n"
            )
        );
        assert_eq!(field(&json!("a;b\"c")), "\"a;b\"\"c\"");
    }

    #[test]
    fn the_csv_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("payments.csv");
        fs::write(&file, "old").unwrap();
        write_durably(&file, b"new\r\n").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"new\r\n");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        assert!(write_durably(&dir.path().join("no/such/dir/x.csv"), b"x").is_err());
    }
}
