//! fsed itself: `status`, `version`, `doctor` (and its look at the database when fsed does
//! not answer), `verify` and `backup`.

use std::path::Path;

use fsed_client::Client;
use serde_json::json;

use crate::error::CallError;
use crate::output::{cell, pretty, print_cards, print_stats, show, table};

/// `fsectl status`: version, cards present and queue counts.
pub(crate) fn status(c: &mut Client, j: bool) -> Result<(), CallError> {
    let (v, cards, stats) = (
        c.call("system.version", json!({}))?,
        c.call("cards.list", json!({}))?,
        c.call("queue.stats", json!({}))?,
    );
    show(
        j,
        json!({"version": v, "cards": cards, "queue": stats}),
        &|r| {
            println!(
                "fsed {} (API {})",
                cell(&r["version"]["version"]),
                r["version"]["api"]
            );
            print_cards(&r["cards"]);
            for line in session_lines(&r["cards"]) {
                println!("{line}");
            }
            print_stats(&r["queue"]);
        },
    );
    Ok(())
}

/// One line per CPS: its signing session (lots signed and left, when it ends) or that its PIN
/// is needed; and who holds a locked card, until when.
fn session_lines(cards: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for card in cards.as_array().into_iter().flatten() {
        let serial = cell(&card["serial"]);
        if card["kind"] == "cps" {
            let s = &card["session"];
            out.push(if s.is_object() {
                format!(
                    "session {serial}: {} lots signed, {} left, since {}, ends by {}",
                    s["lots_signed"],
                    s["lots_left"],
                    cell(&s["started_at"]),
                    cell(&s["expires_at"])
                )
            } else {
                format!("session {serial}: none (PIN to verify)")
            });
        }
        if let Some(holder) = card["locked_by"].as_str() {
            out.push(format!(
                "lock {serial}: held by {holder} until {}",
                cell(&card["lock_expires_at"])
            ));
        }
    }
    out
}

/// `fsectl version` (`system.version`).
pub(crate) fn version(c: &mut Client, j: bool) -> Result<(), CallError> {
    show(j, c.call("system.version", json!({}))?, &|r| {
        println!("fsed {} (API {})", cell(&r["version"]), r["api"]);
    });
    Ok(())
}

/// `fsectl backup FILE` (`queue.backup`): the path is made absolute here, fsed writes it.
pub(crate) fn backup(c: &mut Client, j: bool, file: &Path) -> Result<(), CallError> {
    let path = std::path::absolute(file)
        .map_err(|e| CallError::Exit(format!("{}: {e}", file.display()), 2))?;
    let r = c.call(
        "queue.backup",
        json!({ "path": path.display().to_string() }),
    )?;
    show(j, r, &|r| {
        println!(
            "backup {} ({} bytes, integrity ok): events up to {}",
            cell(&r["path"]),
            r["bytes"],
            r["last_event"]
        );
        print_stats(&json!({"sheets": r["sheets"], "lots": r["lots"]}));
    });
    Ok(())
}

/// `fsectl doctor`: fsed's own diagnosis, or, when fsed does not answer, its database looked
/// at by [`offline_doctor`].
pub(crate) fn doctor_or_offline(
    c: &mut Client,
    j: bool,
    thorough: bool,
    database: &Path,
) -> Result<(), CallError> {
    match doctor(c, j, thorough) {
        Err(CallError::Unreachable(m)) => offline_doctor(&m, database, j),
        done => done,
    }
}

/// `system.doctor`, printed check by check; exit 4 on a warning, 5 on a failure.
fn doctor(c: &mut Client, json_out: bool, thorough: bool) -> Result<(), CallError> {
    let params = if thorough {
        json!({"thorough": true})
    } else {
        json!({})
    };
    let r = c.call("system.doctor", params)?;
    if json_out {
        pretty(&r);
    } else {
        for check in r["checks"].as_array().into_iter().flatten() {
            let mark = match check["status"].as_str() {
                Some("ok") => "ok  ",
                Some("warning") => "WARN",
                _ => "FAIL",
            };
            println!(
                "[{mark}] {:<12} {}",
                cell(&check["check"]),
                cell(&check["detail"])
            );
            if let Some(fix) = check["fix"].as_str() {
                println!("       {:<12} → {fix}", "");
            }
        }
    }
    match r["status"].as_str() {
        Some("ok") => Ok(()),
        Some("warning") => Err(CallError::Exit("warnings found".into(), 4)),
        _ => Err(CallError::Exit("problems found".into(), 5)),
    }
}

/// `store.verify`: what was checked, each damaged row by kind and id; exit 7 when any.
pub(crate) fn verify(c: &mut Client, json_out: bool) -> Result<(), CallError> {
    let r = c.call("store.verify", json!({}))?;
    let damaged = r["damaged"].as_array().cloned().unwrap_or_default();
    if json_out {
        pretty(&r);
    } else {
        println!(
            "{} sheet(s), {} lot(s), {} DRE lot(s) checked; {} damaged",
            r["sheets"],
            r["lots"],
            r["dre_lots"],
            damaged.len()
        );
        let rows: Vec<Vec<String>> = damaged
            .iter()
            .map(|d| vec![cell(&d["kind"]), cell(&d["id"]), cell(&d["reason"])])
            .collect();
        if !rows.is_empty() {
            table(&["kind", "id", "reason"], &rows);
        }
    }
    if damaged.is_empty() {
        Ok(())
    } else {
        Err(CallError::Exit(
            format!(
                "{} damaged row(s): restore the database from a backup",
                damaged.len()
            ),
            7,
        ))
    }
}

/// `fsectl doctor` when fsed does not answer: its database compared with the database's
/// high-water mark, read-only (exit 5 when committed data is missing or the file is unusable).
pub(crate) fn offline_doctor(
    unreachable: &str,
    db: &Path,
    json_out: bool,
) -> Result<(), CallError> {
    let (status, detail, fix) = match fsed::mark::check(db) {
        Ok(c) => match c.database {
            Some(hw) => ("ok", format!("database {} as far as its high-water mark (events up to {})", db.display(), hw.last_event), None),
            None => ("ok", format!("no database at {} yet", db.display()), None),
        },
        Err(fsed::mark::CheckError::Lost(lost)) => (
            "failure",
            format!("committed data is missing from {}: {}", db.display(), lost.missing.join("; ")),
            Some("with fsed stopped, restore the latest backup (`fsed restore FILE`), or accept the loss (`fsed accept-loss`)"),
        ),
        Err(fsed::mark::CheckError::Queue(e @ (fse_queue::QueueError::Corrupt { .. } | fse_queue::QueueError::SchemaTooNew { .. }))) => (
            "failure",
            e.to_string(),
            Some("with fsed stopped, restore the latest backup (`fsed restore FILE`)"),
        ),
        Err(e) => ("warning", format!("database not checked: {e}"), Some("run `fsectl doctor` as root, or `fsed check-config` as fsed's user")),
    };
    if json_out {
        pretty(&json!({
            "status": status,
            "checks": [
                {"check": "fsed", "status": "failure", "detail": unreachable},
                {"check": "durability", "status": status, "detail": detail, "fix": fix},
            ],
        }));
    } else {
        println!("[FAIL] {:<12} {unreachable}", "fsed");
        let mark = match status {
            "ok" => "ok  ",
            "warning" => "WARN",
            _ => "FAIL",
        };
        println!("[{mark}] {:<12} {detail}", "durability");
        if let Some(fix) = fix {
            println!("       {:<12} → {fix}", "");
        }
    }
    Err(CallError::Exit("fsed does not answer".into(), 5))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_session_line_per_cps_and_a_lock_line_per_locked_card() {
        let cards = serde_json::json!([
            {"kind": "cps", "serial": "CPS-0001", "session": {"lots_signed": 3, "lots_left": 997,
             "started_at": "2026-12-07T08:00:00Z", "expires_at": "2026-12-07T20:00:00Z"},
             "locked_by": "local:1000#4", "lock_expires_at": "2026-12-07T08:00:30.000Z"},
            {"kind": "cps", "serial": "CPS-0002", "session": null},
            {"kind": "vitale", "serial": "VIT-0001"}
        ]);
        assert_eq!(
            super::session_lines(&cards),
            [
                "session CPS-0001: 3 lots signed, 997 left, since 2026-12-07T08:00:00Z, ends by 2026-12-07T20:00:00Z",
                "lock CPS-0001: held by local:1000#4 until 2026-12-07T08:00:30.000Z",
                "session CPS-0002: none (PIN to verify)",
            ]
        );
    }
}
