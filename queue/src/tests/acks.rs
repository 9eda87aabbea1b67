//! ARLs: positive, negative, duplicate, early and refused.

use super::*;

#[test]
fn negative_arl_rejects_the_named_sheets_with_their_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (lot_id, s) = signed_lot(&mut q, 3);
    assert!(q.mark_lot_sent(&lot_id).unwrap());
    let rej = vec![
        Rejection {
            sheet_number: Some(s[1].number),
            code: "SHARES".into(),
            reason: "AMO share".into(),
        },
        Rejection {
            sheet_number: Some(s[1].number),
            code: "NIR".into(),
            reason: "bad key".into(),
        },
        Rejection {
            sheet_number: Some(s[2].number),
            code: "ACT".into(),
            reason: "unknown act".into(),
        },
    ];
    assert_eq!(
        q.record_arl(&arl(&lot_id, ArlStatus::Negative, rej.clone()), b"arl")
            .unwrap(),
        ArlOutcome::Applied
    );
    assert_eq!(lot(&q, &lot_id).state, LotState::Rejected);
    let got: Vec<(SheetState, Option<String>)> = s
        .iter()
        .map(|x| sheet(&q, x.id))
        .map(|x| (x.state, x.reason))
        .collect();
    assert_eq!(
        got,
        [
            (SheetState::Acknowledged, None),
            (
                SheetState::Rejected,
                Some("SHARES: AMO share; NIR: bad key".into())
            ),
            (SheetState::Rejected, Some("ACT: unknown act".into())),
        ]
    );
    let ack = q.get_ack(&lot_id).unwrap().unwrap();
    assert_eq!((ack.status, ack.rejections), (ArlStatus::Negative, rej));
    assert_eq!(kinds(&q).last().map(String::as_str), Some("arl.negative"));
}

#[test]
fn negative_arl_for_the_whole_lot_rejects_every_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (lot_id, s) = signed_lot(&mut q, 3);
    assert!(q.mark_lot_sent(&lot_id).unwrap());
    let rej = vec![
        rejection(Some(s[0].number), "SHARES"),
        rejection(None, "LOT_SIGNATURE"),
    ];
    q.record_arl(&arl(&lot_id, ArlStatus::Negative, rej), b"arl")
        .unwrap();
    assert_eq!(lot(&q, &lot_id).state, LotState::Rejected);
    let got: Vec<(SheetState, Option<String>)> = s
        .iter()
        .map(|x| sheet(&q, x.id))
        .map(|x| (x.state, x.reason))
        .collect();
    assert_eq!(
        got,
        [
            (
                SheetState::Rejected,
                Some("SHARES: SHARES wrong; LOT_SIGNATURE: LOT_SIGNATURE wrong".into())
            ),
            (
                SheetState::Rejected,
                Some("LOT_SIGNATURE: LOT_SIGNATURE wrong".into())
            ),
            (
                SheetState::Rejected,
                Some("LOT_SIGNATURE: LOT_SIGNATURE wrong".into())
            ),
        ]
    );
    assert_eq!(q.stats().unwrap().sheets["rejected"], 3);
}

#[test]
fn negative_arl_without_reason_or_naming_a_foreign_sheet_rejects_every_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (first, _) = signed_lot(&mut q, 2);
    let (second, _) = signed_lot(&mut q, 2);
    q.record_arl(&arl(&first, ArlStatus::Negative, vec![]), b"arl")
        .unwrap();
    let reasons: Vec<Option<String>> = q
        .lot_sheets(&first)
        .unwrap()
        .into_iter()
        .map(|s| s.reason)
        .collect();
    assert_eq!(
        reasons,
        [
            Some("NEGATIVE: negative ARL without a reason".into()),
            Some("NEGATIVE: negative ARL without a reason".into())
        ]
    );

    q.record_arl(
        &arl(
            &second,
            ArlStatus::Negative,
            vec![rejection(Some(999), "ACT")],
        ),
        b"arl",
    )
    .unwrap();
    for s in q.lot_sheets(&second).unwrap() {
        assert_eq!(s.state, SheetState::Rejected);
        assert_eq!(
            s.reason.as_deref(),
            Some("ACT: ACT wrong (for sheet 999, which is not in this lot)")
        );
    }
}

#[test]
fn duplicate_arl_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (lot_id, s) = signed_lot(&mut q, 2);
    q.mark_lot_sent(&lot_id).unwrap();
    let first = arl(
        &lot_id,
        ArlStatus::Negative,
        vec![rejection(Some(s[0].number), "SHARES")],
    );
    assert_eq!(q.record_arl(&first, b"first").unwrap(), ArlOutcome::Applied);
    let before = snapshot(&q);

    // The same ARL again, and a contradicting one: both are duplicates.
    assert_eq!(
        q.record_arl(&first, b"first").unwrap(),
        ArlOutcome::Duplicate
    );
    let other = arl(&lot_id, ArlStatus::Positive, vec![]);
    assert_eq!(
        q.record_arl(&other, b"second").unwrap(),
        ArlOutcome::Duplicate
    );
    assert_eq!(snapshot(&q), before);
    assert_eq!(sheet(&q, s[0].id).state, SheetState::Rejected);
    assert_eq!(sheet(&q, s[1].id).state, SheetState::Acknowledged);
    assert_eq!(q.get_ack(&lot_id).unwrap().unwrap().der, b"first");

    // Still a duplicate after a reopen.
    drop(q);
    let mut q = open(&dir);
    assert_eq!(
        q.record_arl(&other, b"second").unwrap(),
        ArlOutcome::Duplicate
    );
    assert_eq!(snapshot(&q), before);
}

#[test]
fn arl_for_a_lot_still_signed_is_applied_and_sent_comes_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (lot_id, s) = signed_lot(&mut q, 2);
    assert_eq!(
        q.record_arl(&arl(&lot_id, ArlStatus::Positive, vec![]), b"arl")
            .unwrap(),
        ArlOutcome::Applied
    );
    assert_eq!(lot(&q, &lot_id).state, LotState::Acknowledged);
    assert!(s
        .iter()
        .all(|x| sheet(&q, x.id).state == SheetState::Acknowledged));
    assert!(
        q.lots_to_send().unwrap().is_empty(),
        "an acknowledged lot is not sent again"
    );
    assert!(!q.mark_lot_sent(&lot_id).unwrap());
    assert_eq!(lot(&q, &lot_id).state, LotState::Acknowledged);
}

#[test]
fn arl_for_an_unknown_or_unsigned_lot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    add(&mut q, "8A", "D");
    let lots = q.close_lots(None, 10, t("20261122110000Z")).unwrap();
    let events = q.events_since(0, 100).unwrap().len();
    assert!(matches!(
        q.record_arl(&arl("nope", ArlStatus::Positive, vec![]), b""),
        Err(QueueError::NotFound(_))
    ));
    let err = q
        .record_arl(&arl(&lots[0].id, ArlStatus::Positive, vec![]), b"")
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::InvalidTransition { from, to, .. } if from == "closed" && to == "acknowledged"),
        "{err}"
    );
    assert_eq!(lot(&q, &lots[0].id).state, LotState::Closed);
    assert_eq!(q.events_since(0, 100).unwrap().len(), events);
    assert!(q.get_ack(&lots[0].id).unwrap().is_none());
}
