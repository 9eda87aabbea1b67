//! Payment truth per sheet through the socket: `fse.status` from created to paid, and the
//! late-payment penalties of `payments.list` (décret 2016-1069) on ARLs and payment returns
//! dated by the test, signed with the test PKI's insurer keys and dropped into fsed's spool
//! inbox; `fsectl payments --csv` read back line by line. Full tier: the insurer simulator's
//! `--pay-after-working-days` over the real broker gives the penalty worked out by hand.
//!
//! Every figure is worked out by hand on the 2026–2027 calendar (Monday 7 December 2026 is a
//! Monday; Friday 25 December and Friday 1 January are public holidays). The default Vitale
//! card's beneficiary is an adult: a G (30.00 €) is paid 70 % by the AMO, 21.00 €, less the
//! participation forfaitaire of 2.00 € on the first 4 acts of a day with one professional:
//! AMO share 19.00 € (sheets 1 to 4 of the day), 21.00 € from the 5th.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{bin, wait_for, Rpc};
use fse_formats::ack::{Arl, ArlStatus, Payment, PaymentOutcome, PaymentReturn, ReturnContent};
use fse_formats::lot::SignedLot;
use fse_simulator::insurer::sign_return;
use serde_json::{json, Value};

/// Writes `bytes` into the spool inbox as `name`, whole (a hidden name, then renamed).
fn drop_in(inbox: &Path, name: &str, bytes: &[u8]) {
    let tmp = inbox.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, inbox.join(name)).unwrap();
}

/// Makes `n` sheets in AMO tiers payant, closes their lot and waits for it in the outbox;
/// returns the sheets made and the lot.
fn lot_of(rpc: &mut Rpc, outbox: &Path, n: usize, seen: usize) -> (Vec<Value>, SignedLot) {
    let made: Vec<Value> = (0..n)
        .map(|_| {
            rpc.ok(
                "fse.create",
                json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}}),
            )
        })
        .collect();
    rpc.ok("lots.close", json!({}));
    let lot = wait_for("the lot in the outbox", Duration::from_secs(30), || {
        let mut lots: Vec<_> = std::fs::read_dir(outbox)
            .ok()?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "lot"))
            .map(|e| e.path())
            .collect();
        lots.sort();
        (lots.len() > seen).then_some(())?;
        SignedLot::from_der(&std::fs::read(lots.last()?).ok()?).ok()
    });
    (made, lot)
}

/// A positive ARL of `lot`, received on `at`.
fn arl(lot: &SignedLot, at: &str) -> Vec<u8> {
    sign_return(ReturnContent::Arl(Arl {
        lot_id: lot.header.lot_id.clone(),
        merkle_root: hex::encode(lot.header.merkle_root),
        status: ArlStatus::Positive,
        insurer: lot.header.destination.clone(),
        received_at: at.into(),
        rejections: vec![],
    }))
    .unwrap()
}

/// A payment return of `lot` for sheet `number`, issued on `at`: paid `amount_cents`, or
/// refused when `None`.
fn pay(lot: &SignedLot, number: u64, amount_cents: Option<u64>, at: &str) -> Vec<u8> {
    let outcome = match amount_cents {
        Some(amount_cents) => PaymentOutcome::Paid { amount_cents },
        None => PaymentOutcome::Refused {
            code: "RIGHTS_CLOSED".into(),
            reason: "droits fermés".into(),
        },
    };
    sign_return(ReturnContent::Payment(PaymentReturn {
        lot_id: lot.header.lot_id.clone(),
        insurer: lot.header.destination.clone(),
        issued_at: at.into(),
        payments: vec![Payment {
            sheet_number: number,
            outcome,
        }],
    }))
    .unwrap()
}

/// Waits until sheet `id` is in `state`.
fn wait_state(rpc: &mut Rpc, id: &Value, state: &str) -> Value {
    wait_for(
        &format!("sheet {id} {state}"),
        Duration::from_secs(30),
        || {
            let s = rpc.ok("fse.status", json!({"sheet": id}));
            (s["state"] == state).then_some(s)
        },
    )
}

/// What a test expects of one sheet in `payments.list`: (paid date, working days, AMO share,
/// rule, penalty, overdue).
type Expected = (Option<&'static str>, u64, u64, &'static str, u64, bool);

#[test]
fn late_payments_are_counted_in_french_working_days() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_fsed, mut rpc) = common::start_fsed_virtual(
        d,
        2,
        "",
        &["--lot-max-sheets", "100", "--lot-max-age-secs", "3600"],
    );
    let _cards = common::start_fast_cards_on(d, &[]).0;
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let (outbox, inbox) = (d.join("spool/outbox"), d.join("spool/inbox"));

    let (first, lot1) = lot_of(&mut rpc, &outbox, 6, 0);
    // Sent, no ARL yet: fsed sends the same lot again by itself; safe.
    let s = wait_state(&mut rpc, &first[0]["id"], "sent");
    assert_eq!(s["sent"]["times"], 1, "{s}");
    assert_eq!(s["resend_safe"]["safe"], true, "{s}");
    assert_eq!(s["arl"], Value::Null, "{s}");
    assert_eq!(s["late_payment"], Value::Null, "{s}");
    assert_eq!(s["lot"]["id"], json!(lot1.header.lot_id), "{s}");
    assert_eq!(s["lot"]["signed"], true, "{s}");
    // 30.00 € × 70 % = 21.00 € less 2.00 €; the patient pays 30.00 − 21.00 = 9.00 € + 2.00 €.
    assert_eq!(s["amounts"]["amo_cents"], 1900, "{s}");
    assert_eq!(s["amounts"]["patient_cents"], 1100, "{s}");
    assert_eq!(s["tiers_payant"]["amo"], true, "{s}");

    // Lot 1: ARL Friday 4 December 2026 (11:00 in Paris). Mon 7 = day 1, Tue 15 = 7,
    // Wed 16 = 8, Thu 17 = 9, Fri 18 = 10, Sat 19 adds nothing.
    drop_in(
        &inbox,
        &format!("{}.arl", lot1.header.lot_id),
        &arl(&lot1, "20261204100000Z"),
    );
    wait_state(&mut rpc, &first[5]["id"], "acknowledged");
    let paid1 = [
        ("20261215100000Z", 1900),
        ("20261216100000Z", 1900),
        ("20261217100000Z", 1900),
        ("20261218100000Z", 1900),
        ("20261219100000Z", 2100),
    ];
    for (i, (at, cents)) in paid1.iter().enumerate() {
        let number = first[i]["number"].as_u64().unwrap();
        let name = format!("{}-{number}.pay", lot1.header.lot_id);
        drop_in(&inbox, &name, &pay(&lot1, number, Some(*cents), at));
    }

    // Lot 2: ARL Wednesday 23 December 2026. Thu 24 = 1, (Fri 25 Noël), Mon 28 = 2, Tue 29
    // = 3, Wed 30 = 4, Thu 31 = 5, (Fri 1 January), Mon 4 = 6, Tue 5 = 7, Wed 6 = 8, Thu 7 = 9,
    // Fri 8 = 10.
    let (second, lot2) = lot_of(&mut rpc, &outbox, 4, 1);
    wait_state(&mut rpc, &second[0]["id"], "sent");
    drop_in(
        &inbox,
        &format!("{}.arl", lot2.header.lot_id),
        &arl(&lot2, "20261223100000Z"),
    );
    wait_state(&mut rpc, &second[3]["id"], "acknowledged");
    let n2: Vec<u64> = second
        .iter()
        .map(|s| s["number"].as_u64().unwrap())
        .collect();
    let lot2_id = &lot2.header.lot_id;
    // Tuesday 5 January 10:00 UTC: day 7. Tuesday 5 January 23:30 UTC is Wednesday 6 00:30 in
    // Paris: day 8 (the UTC date alone would say 7). The third sheet is refused.
    drop_in(
        &inbox,
        &format!("{lot2_id}-{}.pay", n2[0]),
        &pay(&lot2, n2[0], Some(2100), "20270105100000Z"),
    );
    drop_in(
        &inbox,
        &format!("{lot2_id}-{}.pay", n2[1]),
        &pay(&lot2, n2[1], Some(2100), "20270105233000Z"),
    );
    drop_in(
        &inbox,
        &format!("{lot2_id}-{}.pay", n2[2]),
        &pay(&lot2, n2[2], None, "20270105100000Z"),
    );
    for s in first.iter().take(5).chain(&second[..2]) {
        wait_state(&mut rpc, &s["id"], "paid");
    }
    wait_state(&mut rpc, &second[2]["id"], "refused");

    status_of_paid_and_new_sheets(&mut rpc, &first);
    let all: Vec<&Value> = first.iter().chain(&second).collect();
    let expected = listed_as_of_8_january(&mut rpc, &all, &lot1.header.destination);
    filters(&mut rpc, &all);
    csv_for_the_accountant(d, &all, &expected, [&lot1, &lot2]);
}

/// `payments.list` as of Friday 8 January 2027, sheet by sheet and in total; returns what
/// was expected of each sheet.
fn listed_as_of_8_january(rpc: &mut Rpc, all: &[&Value], destination: &str) -> [Expected; 10] {
    // As of Friday 8 January 2027. Sheet 6 (lot 1) unpaid: Dec 7–11 = 5, 14–18 = 10, 21–24
    // = 14, 28–31 = 18, Jan 4–8 = 23 working days. Sheet 10 (lot 2) unpaid: day 10.
    let expected: [Expected; 10] = [
        (Some("20261215"), 7, 1900, "on_time", 0, false),
        (Some("20261216"), 8, 1900, "flat_1_eur", 100, false),
        (Some("20261217"), 9, 1900, "flat_1_eur", 100, false),
        // 10 % of 19.00 € = 1.90 €.
        (Some("20261218"), 10, 1900, "ten_percent", 190, false),
        // Paid on a Saturday: still day 10; the 5th act of the day keeps no participation
        // forfaitaire, AMO 21.00 €: 10 % = 2.10 €.
        (Some("20261219"), 10, 2100, "ten_percent", 210, false),
        (None, 23, 2100, "ten_percent", 210, true),
        (Some("20270105"), 7, 2100, "on_time", 0, false),
        (Some("20270106"), 8, 2100, "flat_1_eur", 100, false),
        (None, 0, 2100, "refused", 0, false),
        (None, 10, 2100, "ten_percent", 210, true),
    ];
    let list = rpc.ok("payments.list", json!({"as_of": "20270108"}));
    let sheets = list["sheets"].as_array().unwrap();
    assert_eq!(sheets.len(), 10, "{list}");
    for ((line, made), (paid, days, amo, rule, penalty, overdue)) in
        sheets.iter().zip(all).zip(expected)
    {
        assert_eq!(line["id"], made["id"], "{line}");
        assert_eq!(line["paid_date"], json!(paid), "{line}");
        assert_eq!(line["working_days"], days, "{line}");
        assert_eq!(line["amo_cents"], amo, "{line}");
        assert_eq!(line["rule"], rule, "{line}");
        assert_eq!(line["penalty_cents"], penalty, "{line}");
        assert_eq!(line["overdue"], overdue, "{line}");
    }
    // One insurer: 10 sheets; AMO 4 × 19.00 + 6 × 21.00 = 202.00 €; paid 4 × 19.00 + 3 ×
    // 21.00 = 139.00 €; penalties 1.00 + 1.00 + 1.90 + 2.10 + 2.10 + 1.00 + 2.10 = 11.20 €;
    // 2 overdue.
    assert_eq!(
        list["totals"],
        json!([{"insurer": destination, "sheets": 10, "amo_cents": 20200,
            "paid_cents": 13900, "penalty_cents": 1120, "overdue": 2}]),
        "{list}"
    );
    expected
}

/// `fse.status` of a paid sheet (by id and by number), of a sheet not yet in a lot, and its
/// refusals.
fn status_of_paid_and_new_sheets(rpc: &mut Rpc, first: &[Value]) {
    let s = rpc.ok("fse.status", json!({"sheet": first[1]["id"]}));
    assert_eq!(s["state"], "paid", "{s}");
    assert_eq!(s["arl"]["status"], "positive", "{s}");
    assert_eq!(s["arl"]["date"], "20261204100000Z", "{s}");
    assert_eq!(s["payment"]["amount_cents"], 1900, "{s}");
    assert_eq!(
        s["late_payment"],
        json!({"arl_date": "20261204", "paid_date": "20261216", "working_days": 8,
            "amo_cents": 1900, "rule": "flat_1_eur", "penalty_cents": 100, "overdue": false}),
        "{s}"
    );
    assert_eq!(s["resend_safe"]["safe"], false, "{s}");
    let by_number = rpc.ok("fse.status", json!({"number": first[1]["number"]}));
    assert_eq!(by_number, s);
    let new = rpc.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}}),
    );
    let s = rpc.ok("fse.status", json!({"sheet": new["id"]}));
    assert_eq!(
        (&s["state"], &s["lot"], &s["sent"]),
        (&json!("accepted"), &Value::Null, &Value::Null)
    );
    assert_eq!(s["resend_safe"]["safe"], true, "{s}");
    rpc.ok("fse.cancel", json!({"id": new["id"], "reason": "test"}));
    let s = rpc.ok("fse.status", json!({"sheet": new["id"]}));
    assert_eq!(s["resend_safe"]["safe"], false, "{s}");
    for (params, code, field) in [
        (json!({"sheet": 999_999}), 1020, "sheet"),
        (json!({"number": 999_999}), 1020, "number"),
        (json!({}), -32602, "sheet"),
        (json!({"sheet": 1, "number": 1}), -32602, "sheet"),
    ] {
        let e = rpc.call("fse.status", params.clone());
        assert_eq!(e["error"]["code"], code, "{params}: {e}");
        assert_eq!(e["error"]["data"]["field"], field, "{params}: {e}");
    }
}

/// `overdue_only`, `from` and `to`, and their refusals.
fn filters(rpc: &mut Rpc, all: &[&Value]) {
    let ids = |list: &Value| -> Vec<Value> {
        list["sheets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].clone())
            .collect()
    };
    let overdue = rpc.ok(
        "payments.list",
        json!({"as_of": "20270108", "overdue_only": true}),
    );
    assert_eq!(
        ids(&overdue),
        vec![all[5]["id"].clone(), all[9]["id"].clone()]
    );
    // As of Tuesday 15 December 2026, sheet 6 is on day 7: not overdue yet.
    let early = rpc.ok(
        "payments.list",
        json!({"as_of": "20261215", "overdue_only": true, "to": "20261204"}),
    );
    assert_eq!(ids(&early), Vec::<Value>::new(), "{early}");
    let lot2 = rpc.ok("payments.list", json!({"from": "20261220"}));
    let want: Vec<Value> = all[6..].iter().map(|s| s["id"].clone()).collect();
    assert_eq!(ids(&lot2), want);
    for (params, field) in [
        (json!({"from": "2026-12-01"}), "from"),
        (json!({"as_of": "20261301"}), "as_of"),
        (json!({"from": "20261210", "to": "20261201"}), "to"),
        (json!({"overdue": true}), "overdue"),
    ] {
        let e = rpc.call("payments.list", params.clone());
        assert_eq!(e["error"]["code"], -32602, "{params}: {e}");
        assert_eq!(e["error"]["data"]["field"], field, "{params}: {e}");
    }
}

/// `fsectl payments --csv FILE --as-of 20270108`: the file, line by line.
fn csv_for_the_accountant(d: &Path, all: &[&Value], expected: &[Expected], lots: [&SignedLot; 2]) {
    let file = d.join("compta/paiements.csv");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let out = Command::new(bin("fsectl"))
        .arg("--socket")
        .arg(d.join("fsed.sock"))
        .args(["payments", "--as-of", "20270108", "--csv"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(std::fs::read(&file).unwrap()).unwrap();
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(
        lines[0],
        "sheet_id;number;lot;insurer;arl_date;paid_date;working_days;amo_eur;paid_eur;rule;penalty_eur;overdue"
    );
    assert_eq!(lines.len(), 11, "{text}");
    let euros = |c: u64| format!("{},{:02}", c / 100, c % 100);
    for (i, (line, (paid, days, amo, rule, penalty, overdue))) in
        lines[1..].iter().zip(expected).enumerate()
    {
        let lot = lots[usize::from(i >= 6)];
        let arl_date = if i < 6 { "2026-12-04" } else { "2026-12-23" };
        let paid_date = paid
            .map(|p| format!("{}-{}-{}", &p[..4], &p[4..6], &p[6..]))
            .unwrap_or_default();
        let paid_eur = if paid.is_some() { *amo } else { 0 };
        let want = format!(
            "{};{};{};{};{arl_date};{paid_date};{days};{};{};{rule};{};{}",
            all[i]["id"],
            all[i]["number"],
            lot.header.lot_id,
            lot.header.destination,
            euros(*amo),
            euros(paid_eur),
            euros(*penalty),
            if *overdue { "yes" } else { "no" }
        );
        assert_eq!(*line, want, "line {}", i + 2);
    }
    // The table on standard output marks both overdue sheets (the totals' header says
    // OVERDUE too: only the sheets' rows, which start with a number, are counted).
    let table = String::from_utf8(out.stdout).unwrap();
    let marked = table
        .lines()
        .filter(|l| {
            l.starts_with(|c: char| c.is_ascii_digit()) && l.trim_end().ends_with("OVERDUE")
        })
        .count();
    assert_eq!(marked, 2, "{table}");
    // `fsectl status SHEET`: the second sheet, paid on day 8, owes 1 €; never send it again.
    let out = Command::new(bin("fsectl"))
        .arg("--socket")
        .arg(d.join("fsed.sock"))
        .args(["status", &all[1]["id"].to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(": paid\n"), "{text}");
    assert!(
        text.contains("8 working day(s) after the ARL, flat_1_eur: 1.00 € owed"),
        "{text}"
    );
    assert!(text.contains("resend    NOT safe: acknowledged"), "{text}");
}

/// The insurer simulator's late-payment knob over the real broker: every payment return
/// dated 10 working days after its ARL, so each sheet owes 10 % of its AMO share.
#[cfg(feature = "full")]
#[test]
fn the_insurer_knob_pays_late_over_the_broker() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (profile, destination) = common::vitale_of_new_centre(d);
    let _insurer = common::start_insurer(&[
        "--binding",
        &destination,
        "--payments",
        "--pay-after-working-days",
        "10",
    ]);
    let return_queue = format!("fsed.returns.late.{}", common::unique());
    let (mut fsed, mut rpc) = common::start_fsed_virtual(
        d,
        2,
        "",
        &[
            "--transport",
            "amqp",
            "--return-queue",
            &return_queue,
            "--lot-max-sheets",
            "100",
            "--lot-max-age-secs",
            "3600",
        ],
    );
    let _cards = common::start_fast_cards_on(d, &["--vitale-profile", profile.to_str().unwrap()]).0;
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let made: Vec<Value> = (0..2)
        .map(|_| {
            rpc.ok(
                "fse.create",
                json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}}),
            )
        })
        .collect();
    rpc.ok("lots.close", json!({}));
    for m in &made {
        wait_state(&mut rpc, &m["id"], "paid");
    }
    let list = rpc.ok("payments.list", json!({}));
    let sheets = list["sheets"].as_array().unwrap();
    assert_eq!(sheets.len(), 2, "{list}");
    for (line, m) in sheets.iter().zip(&made) {
        // The first two acts of the day: AMO 19.00 €. Day 10 exactly: 10 % = 1.90 €.
        assert_eq!(line["id"], m["id"], "{line}");
        assert_eq!(line["working_days"], 10, "{line}");
        assert_eq!(line["amo_cents"], 1900, "{line}");
        assert_eq!(line["rule"], "ten_percent", "{line}");
        assert_eq!(line["penalty_cents"], 190, "{line}");
        assert_eq!(line["insurer"], json!(destination), "{line}");
    }
    assert_eq!(list["totals"][0]["penalty_cents"], 380, "{list}");
    assert!(fsed.terminate().success());
}
