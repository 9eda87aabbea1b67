//! Payment returns applied to acknowledged sheets.

use super::*;

#[test]
fn payment_returns_pay_or_refuse_acknowledged_sheets_once() {
    use fse_formats::ack::{Payment, PaymentOutcome, PaymentReturn};
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (lot_id, s) = signed_lot(&mut q, 4);
    q.mark_lot_sent(&lot_id).unwrap();
    let ret = PaymentReturn {
        lot_id: lot_id.to_string(),
        insurer: "011751234".into(),
        issued_at: "20261130120000Z".into(),
        payments: vec![
            Payment {
                sheet_number: s[0].number,
                outcome: PaymentOutcome::Paid { amount_cents: 1900 },
            },
            Payment {
                sheet_number: s[1].number,
                outcome: PaymentOutcome::Refused {
                    code: "RIGHTS_CLOSED".into(),
                    reason: "droits fermés à la date des soins".into(),
                },
            },
            Payment {
                sheet_number: s[2].number,
                outcome: PaymentOutcome::Paid { amount_cents: 700 },
            },
            Payment {
                sheet_number: 999_999,
                outcome: PaymentOutcome::Paid { amount_cents: 1 },
            },
            Payment {
                sheet_number: u64::MAX,
                outcome: PaymentOutcome::Paid { amount_cents: 1 },
            },
            Payment {
                sheet_number: s[3].number,
                outcome: PaymentOutcome::Paid {
                    amount_cents: u64::MAX,
                },
            },
        ],
    };
    // Before the ARL: nothing is applied, the return is to be offered again.
    let early = q.record_payments(&ret).unwrap();
    assert!(early.not_yet && early.applied.is_empty());
    assert_eq!(sheet(&q, s[0].id).state, SheetState::Sent);

    q.record_arl(
        &arl(
            &lot_id,
            ArlStatus::Negative,
            vec![rejection(Some(s[2].number), "SHARES")],
        ),
        b"arl",
    )
    .unwrap();
    let done = q.record_payments(&ret).unwrap();
    assert!(!done.not_yet);
    assert_eq!(done.applied.len(), 2, "{done:?}");
    assert_eq!(done.duplicates, 0);
    let ignored: Vec<u64> = done.ignored.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        ignored,
        vec![s[2].number, 999_999, u64::MAX, s[3].number],
        "a rejected sheet, strangers and an impossible amount are not paid, and nothing fails"
    );
    assert_eq!(sheet(&q, s[0].id).state, SheetState::Paid);
    let refused = sheet(&q, s[1].id);
    assert_eq!(refused.state, SheetState::Refused);
    assert_eq!(
        refused.reason.as_deref(),
        Some("RIGHTS_CLOSED: droits fermés à la date des soins")
    );
    assert_eq!(
        sheet(&q, s[3].id).state,
        SheetState::Acknowledged,
        "not in this return"
    );
    let kinds = kinds(&q);
    assert!(
        kinds.contains(&"sheet.paid".to_string()) && kinds.contains(&"sheet.refused".to_string())
    );

    // The same return again, even after a reopen: nothing changes.
    let before = snapshot(&q);
    drop(q);
    let mut q = open(&dir);
    let again = q.record_payments(&ret).unwrap();
    assert_eq!((again.applied.len(), again.duplicates), (0, 2));
    assert_eq!(snapshot(&q), before);
    let rows = q.payments(Some(&lot_id), 10).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .any(|r| r.sheet_id == s[0].id
                && r.outcome == PaymentOutcome::Paid { amount_cents: 1900 })
    );
    assert_eq!(q.payments(Some(&l("other")), 10).unwrap().len(), 0);
    assert_eq!(q.acks(None, 10).unwrap().len(), 1);
    assert_eq!(q.stats().unwrap().sheets["paid"], 1);
}
