//! A sheet's trail from created to paid, and the sheets a payment listing reads.

use super::*;
use fse_formats::ack::{Payment, PaymentOutcome, PaymentReturn};

#[test]
fn a_sheet_trail_follows_it_from_created_to_paid() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (lot_id, s) = signed_lot(&mut q, 2);
    let loose = add(&mut q, "8B", "D");
    let trail = q.sheet_trail(loose.id).unwrap().unwrap();
    assert!(trail.lot.is_none() && trail.sending.is_none() && trail.arl.is_none());
    assert!(q.sheet_trail(SheetId(999_999)).unwrap().is_none());

    let trail = q.sheet_trail(s[0].id).unwrap().unwrap();
    assert_eq!(trail.lot.as_ref().unwrap().state, LotState::Signed);
    assert_eq!(trail.sending.as_ref().unwrap().sent_at, None);
    // Nothing is payable before a positive ARL.
    assert!(q.payable_trails(SheetId(0), 100).unwrap().is_empty());

    q.mark_lot_sent(&lot_id).unwrap();
    assert_eq!(q.mark_lot_resent(&lot_id).unwrap(), Some(1));
    let sending = q.sheet_trail(s[0].id).unwrap().unwrap().sending.unwrap();
    assert!(sending.sent_at.is_some());
    assert_eq!(sending.resends, 1);

    q.record_arl(&arl(&lot_id, ArlStatus::Positive, vec![]), b"arl")
        .unwrap();
    q.record_payments(&PaymentReturn {
        lot_id: lot_id.to_string(),
        insurer: "011751234".into(),
        issued_at: "20261204120000Z".into(),
        payments: vec![Payment {
            sheet_number: s[1].number,
            outcome: PaymentOutcome::Paid { amount_cents: 1550 },
        }],
    })
    .unwrap();
    let unpaid = q.sheet_trail(s[0].id).unwrap().unwrap();
    assert_eq!(unpaid.arl.as_ref().unwrap().received_at, "20261122120000Z");
    assert!(unpaid.payment.is_none());
    let paid = q.sheet_trail(s[1].id).unwrap().unwrap();
    assert_eq!(paid.sheet.state, SheetState::Paid);
    let p = paid.payment.unwrap();
    assert_eq!(p.outcome, PaymentOutcome::Paid { amount_cents: 1550 });
    assert_eq!(p.issued_at, "20261204120000Z");

    // Both sheets of the acknowledged lot are listed, the loose one is not; paging by id.
    let listed: Vec<SheetId> = q
        .payable_trails(SheetId(0), 100)
        .unwrap()
        .into_iter()
        .map(|t| t.unwrap().sheet.id)
        .collect();
    assert_eq!(listed, vec![s[0].id, s[1].id]);
    let page: Vec<SheetId> = q
        .payable_trails(s[0].id, 100)
        .unwrap()
        .into_iter()
        .map(|t| t.unwrap().sheet.id)
        .collect();
    assert_eq!(page, vec![s[1].id]);
    assert_eq!(q.sheet_ids_by_number(s[1].number).unwrap(), vec![s[1].id]);
    assert!(q.sheet_ids_by_number(u64::MAX).unwrap().is_empty());
}
