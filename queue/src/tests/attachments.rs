//! Supporting documents: stored once per sheet and content, referenced by the lot signed,
//! sent in an attachment lot once that lot is sent, answered by its ARL once.

use sha2::{Digest, Sha256};

use super::*;
use fse_formats::attachment::{AttachmentKind, AttachmentRef};
use fse_formats::lot::{LotHeader, SignedLot};

fn doc(sheet: &SheetRow, kind: &str, content: &[u8]) -> NewAttachment {
    NewAttachment {
        sheet_id: sheet.id,
        kind: kind.into(),
        media_type: "image/png".into(),
        sha256: Sha256::digest(content).into(),
        content: content.to_vec(),
    }
}

/// A signed lot (unverified: the store does not check signatures) whose header references
/// `refs`.
fn signed_with(lot_id: &LotId, refs: Vec<AttachmentRef>) -> Vec<u8> {
    SignedLot {
        header: LotHeader {
            lot_id: lot_id.as_str().into(),
            number: 1,
            practitioner_id: "8A".into(),
            destination: "D".into(),
            sheet_count: 0,
            merkle_root: [0; 32],
            closed_at: "20261122110000Z".into(),
            cps_serial: "CPS".into(),
            signer_key: [0; 32],
            attachments: refs,
        },
        signature: [0; 64],
        entries: vec![],
        signer_certificate: None,
    }
    .to_der()
    .unwrap()
}

fn reference(a: &AttachmentRow) -> AttachmentRef {
    AttachmentRef {
        sheet_number: a.sheet_number,
        kind: AttachmentKind::parse(&a.kind).unwrap(),
        media_type: a.media_type.clone(),
        size: a.size,
        sha256: a.sha256,
    }
}

#[test]
fn a_document_goes_stored_referenced_sent_acknowledged_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let a = add(&mut q, "8A", "D");
    let (first, fresh) = q
        .insert_attachment(&doc(&a, "prescription", b"doc one"))
        .unwrap();
    assert!(fresh);
    assert_eq!(
        (first.state.as_str(), first.size, first.sheet_number),
        ("stored", 7, 1)
    );
    // The same bytes again: the same document, nothing written.
    let (again, fresh) = q
        .insert_attachment(&doc(&a, "prescription", b"doc one"))
        .unwrap();
    assert!(!fresh);
    assert_eq!(again.id, first.id);
    assert_eq!(q.sheet_attachments(a.id).unwrap().len(), 1);

    let lots = q.close_lots(None, 10, t("20261122110000Z")).unwrap();
    let lot_id = lots[0].id.clone();
    let refs = q.attachments_for_lot(&lot_id).unwrap();
    assert_eq!(refs, vec![first.clone()]);
    q.mark_lot_signed(&lot_id, &signed_with(&lot_id, vec![reference(&first)]))
        .unwrap();
    let row = &q.sheet_attachments(a.id).unwrap()[0];
    assert_eq!(
        (row.state.as_str(), row.signed_lot_id.as_ref()),
        ("referenced", Some(&lot_id))
    );
    // Not sent before its lot is.
    assert!(q.attachment_lots_to_send().unwrap().is_empty());
    q.mark_lot_sent(&lot_id).unwrap();
    let to_send = q.attachment_lots_to_send().unwrap();
    assert_eq!(to_send.len(), 1);
    assert_eq!(to_send[0].lot_id, "8A-A00000001");
    assert_eq!(to_send[0].attachments[0].content, b"doc one");
    let digest = [7u8; 32];
    q.mark_attachment_lot_sent(&to_send[0], &digest).unwrap();
    assert!(q.attachment_lots_to_send().unwrap().is_empty());

    assert_eq!(
        q.apply_attachment_arl("8A-A00000001", "D", &[8; 32], true, None)
            .unwrap(),
        AttachmentArl::Mismatch
    );
    assert_eq!(
        q.apply_attachment_arl("8A-A00000001", "E", &digest, true, None)
            .unwrap(),
        AttachmentArl::WrongInsurer("D".into())
    );
    assert_eq!(
        q.apply_attachment_arl("8A-A00000009", "D", &digest, true, None)
            .unwrap(),
        AttachmentArl::Unknown
    );
    assert_eq!(
        q.apply_attachment_arl("8A-A00000001", "D", &digest, true, None)
            .unwrap(),
        AttachmentArl::Applied(1)
    );
    assert_eq!(
        q.apply_attachment_arl("8A-A00000001", "D", &digest, false, Some("X: y"))
            .unwrap(),
        AttachmentArl::Duplicate
    );
    let row = &q.sheet_attachments(a.id).unwrap()[0];
    assert_eq!(
        (row.state.as_str(), row.reason.as_deref()),
        ("acknowledged", None)
    );
    let k = kinds(&q);
    for e in [
        "attachment.stored",
        "attachments.referenced",
        "attachment_lot.sent",
        "attachment_lot.acknowledged",
    ] {
        assert_eq!(k.iter().filter(|x| *x == e).count(), 1, "{e}: {k:?}");
    }
}

#[test]
fn a_document_added_after_its_lot_was_signed_goes_into_the_next_lot() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (first_lot, sheets) = signed_lot(&mut q, 1);
    let (late, _) = q
        .insert_attachment(&doc(&sheets[0], "degraded_paper", b"paper"))
        .unwrap();
    // Another practitioner's lot does not take it; the same practitioner's next lot does.
    add(&mut q, "8B", "D");
    add(&mut q, "8A", "D");
    let lots = q.close_lots(None, 10, t("20261122120000Z")).unwrap();
    let (other, next): (Vec<_>, Vec<_>) = lots.iter().partition(|l| l.practitioner_id == p("8B"));
    assert!(q.attachments_for_lot(&other[0].id).unwrap().is_empty());
    assert_eq!(
        q.attachments_for_lot(&next[0].id).unwrap(),
        vec![late.clone()]
    );
    assert_ne!(next[0].id, first_lot);
    // A sheet still open keeps its document for its own lot.
    let open_sheet = add(&mut q, "8A", "D");
    q.insert_attachment(&doc(&open_sheet, "other", b"later"))
        .unwrap();
    assert_eq!(q.attachments_for_lot(&next[0].id).unwrap(), vec![late]);
}

#[test]
fn sheets_without_paper_and_damaged_content() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let a = add(&mut q, "8A", "D");
    let b = add(&mut q, "8A", "D");
    // Both made at 2026-11-22 10:00 (new_sheet): before the 23rd, not before the 22nd.
    assert_eq!(q.sheets_without_paper("20261123000000Z").unwrap().len(), 2);
    assert!(q
        .sheets_without_paper("20261122000000Z")
        .unwrap()
        .is_empty());
    q.insert_attachment(&doc(&b, "degraded_paper", b"paper"))
        .unwrap();
    // A prescription is not the paper sheet.
    q.insert_attachment(&doc(&a, "prescription", b"rx"))
        .unwrap();
    let left = q.sheets_without_paper("20261123000000Z").unwrap();
    assert_eq!(left.iter().map(|r| r.0).collect::<Vec<_>>(), vec![a.id]);
    assert_eq!(q.attachment_counts(a.id, b.id).unwrap().len(), 2);

    // Bytes changed under the store are never sent.
    let lots = q.close_lots(None, 10, t("20261122110000Z")).unwrap();
    let refs: Vec<_> = q
        .attachments_for_lot(&lots[0].id)
        .unwrap()
        .iter()
        .map(reference)
        .collect();
    q.mark_lot_signed(&lots[0].id, &signed_with(&lots[0].id, refs))
        .unwrap();
    q.mark_lot_sent(&lots[0].id).unwrap();
    assert_eq!(q.attachment_lots_to_send().unwrap()[0].attachments.len(), 2);
    q.conn
        .execute(
            "UPDATE attachments SET content = x'00' WHERE kind = 'prescription'",
            [],
        )
        .unwrap();
    assert!(matches!(
        q.attachment_lots_to_send(),
        Err(QueueError::Data(_))
    ));
}

#[test]
fn an_attachment_lot_without_its_arl_is_sent_again_a_bounded_number_of_times() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let a = add(&mut q, "8A", "D");
    let (row, _) = q.insert_attachment(&doc(&a, "other", b"doc")).unwrap();
    let lots = q.close_lots(None, 10, t("20261122110000Z")).unwrap();
    q.mark_lot_signed(
        &lots[0].id,
        &signed_with(&lots[0].id, vec![reference(&row)]),
    )
    .unwrap();
    q.mark_lot_sent(&lots[0].id).unwrap();
    let lot = q.attachment_lots_to_send().unwrap().remove(0);
    q.mark_attachment_lot_sent(&lot, &[1; 32]).unwrap();
    // Sent just now: not due for a time in the past, due for one to come.
    let past = st("2000-01-01T00:00:00.000Z");
    let future = st("2999-01-01T00:00:00.000Z");
    assert!(q.attachment_lots_to_resend(past, 2).unwrap().is_empty());
    let due = q.attachment_lots_to_resend(future, 2).unwrap();
    assert_eq!(due.len(), 1);
    // The same lot id and documents as the first sending.
    assert_eq!(
        (due[0].lot_id.as_str(), due[0].attachments.len()),
        ("8A-A00000001", 1)
    );
    assert_eq!(q.mark_attachment_lot_resent("8A-A00000001").unwrap(), 1);
    assert_eq!(q.mark_attachment_lot_resent("8A-A00000001").unwrap(), 2);
    // Two resends used up.
    assert!(q.attachment_lots_to_resend(future, 2).unwrap().is_empty());
    // Its ARL ends it: nothing more to resend, whatever the bound.
    q.apply_attachment_arl("8A-A00000001", "D", &[1; 32], true, None)
        .unwrap();
    assert!(q.attachment_lots_to_resend(future, 9).unwrap().is_empty());
    assert_eq!(q.mark_attachment_lot_resent("8A-A00000001").unwrap(), 0);
}
