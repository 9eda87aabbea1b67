//! Attachment lots (SCOR) at the insurer: the documents of the signed lots it judged are
//! remembered by their references (in memory: a restarted simulator forgets them, and then
//! refuses their attachment lots as unreferenced), and each attachment lot is checked against
//! them: every entry referenced by a judged lot of the same practitioner (the lot the
//! attachment lot names), for the same sheet, with the SHA-256, size and type of its content
//! equal to the reference's. A positive ARL, or a negative one with a stable code per entry
//! (`ATTACHMENT_HASH`, `ATTACHMENT_UNREFERENCED`, `ATTACHMENT_SIZE`, `ATTACHMENT_TYPE`,
//! `ATTACHMENT_LOT_MALFORMED`). Its `merkleRoot` is the SHA-256 of the attachment lot's DER.

use fse_formats::ack::{Arl, ArlStatus, Rejection};
use fse_formats::attachment::{AttachmentLot, AttachmentRef, MediaType};
use fse_formats::lot::LotHeader;
use sha2::{Digest, Sha256};

use super::Insurer;

/// The references of the signed lots judged, by lot id.
#[derive(Debug, Default)]
pub struct Remembered(std::collections::HashMap<String, (String, Vec<AttachmentRef>)>);

impl Remembered {
    /// Keeps the references of a judged lot's header (none: nothing kept).
    pub fn remember(&mut self, header: &LotHeader) {
        if !header.attachments.is_empty() {
            self.0.insert(
                header.lot_id.clone(),
                (header.practitioner_id.clone(), header.attachments.clone()),
            );
        }
    }
}

fn reject(sheet: u64, code: &str, reason: String) -> Rejection {
    Rejection {
        sheet_number: Some(sheet),
        code: code.into(),
        reason,
    }
}

impl Insurer {
    /// Answers one attachment lot (see the module's doc); the same lot id again gets the
    /// same ARL.
    pub fn receive_attachments(&mut self, bytes: &[u8]) -> Arl {
        self.report.received += 1;
        let now = chrono::Utc::now().format("%Y%m%d%H%M%SZ").to_string();
        let digest = hex::encode(Sha256::digest(bytes));
        let lot = match AttachmentLot::from_der(bytes) {
            Ok(lot) => lot,
            Err(e) => {
                return Arl {
                    lot_id: super::UNKNOWN_LOT_ID.into(),
                    merkle_root: digest,
                    status: ArlStatus::Negative,
                    insurer: self.name.clone(),
                    received_at: now,
                    rejections: vec![Rejection {
                        sheet_number: None,
                        code: "ATTACHMENT_LOT_MALFORMED".into(),
                        reason: e.to_string(),
                    }],
                }
            }
        };
        if let Some(previous) = self.answered.get(&lot.lot_id) {
            self.report.duplicates += 1;
            return previous.clone();
        }
        let known = self
            .attachment_refs
            .0
            .get(&lot.signed_lot_id)
            .filter(|(p, _)| *p == lot.practitioner_id);
        let mut rejections = Vec::new();
        for e in &lot.entries {
            let r = &e.reference;
            let referenced = known.is_some_and(|(_, refs)| refs.contains(r));
            let sha = <[u8; 32]>::from(Sha256::digest(&e.content));
            if !referenced {
                rejections.push(reject(
                    r.sheet_number,
                    "ATTACHMENT_UNREFERENCED",
                    format!("not referenced by the signed lot {}", lot.signed_lot_id),
                ));
            } else if sha != r.sha256 {
                rejections.push(reject(
                    r.sheet_number,
                    "ATTACHMENT_HASH",
                    "the content's SHA-256 is not the signed reference's".into(),
                ));
            } else if e.content.len() as u64 != r.size {
                rejections.push(reject(
                    r.sheet_number,
                    "ATTACHMENT_SIZE",
                    format!("{} bytes, the reference says {}", e.content.len(), r.size),
                ));
            } else if MediaType::sniff(&e.content).map(MediaType::as_str) != Some(&r.media_type) {
                rejections.push(reject(
                    r.sheet_number,
                    "ATTACHMENT_TYPE",
                    format!("the content is not {}", r.media_type),
                ));
            }
        }
        let name = if self.as_destination {
            lot.destination.clone()
        } else {
            self.name.clone()
        };
        let arl = Arl {
            lot_id: lot.lot_id.clone(),
            merkle_root: digest,
            status: if rejections.is_empty() {
                ArlStatus::Positive
            } else {
                ArlStatus::Negative
            },
            insurer: name,
            received_at: now,
            rejections,
        };
        match arl.status {
            ArlStatus::Positive => self.report.positive += 1,
            ArlStatus::Negative => self.report.negative += 1,
        }
        for r in &arl.rejections {
            *self.report.rejections.entry(r.code.clone()).or_default() += 1;
        }
        self.answered.insert(arl.lot_id.clone(), arl.clone());
        arl
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::Signer;
    use fse_formats::attachment::{AttachmentEntry, AttachmentKind};

    use super::*;

    /// A judged lot of two sheets whose signed header references `content` for sheet 1, and
    /// the attachment lot carrying `sent` in its place.
    fn judged_then(content: &[u8], sent: &[u8], signed_lot_id: &str) -> Arl {
        let mut lot = crate::insurer::sample_lot("8-00000001", 2);
        let reference = AttachmentRef {
            sheet_number: 1,
            kind: AttachmentKind::Prescription,
            media_type: "application/pdf".into(),
            size: content.len() as u64,
            sha256: Sha256::digest(content).into(),
        };
        lot.header.attachments = vec![reference.clone()];
        let key = crate::profile_keys::test_key(&lot.header.cps_serial);
        lot.signature = key.sign(&lot.header.to_der().unwrap()).to_bytes();
        let mut ins = Insurer::new("ins");
        let arl = ins.receive(&lot.to_der().unwrap());
        assert_eq!(arl.status, ArlStatus::Positive, "{arl:?}");
        let att = AttachmentLot {
            lot_id: AttachmentLot::id(&lot.header.practitioner_id, 1),
            practitioner_id: lot.header.practitioner_id.clone(),
            destination: lot.header.destination.clone(),
            signed_lot_id: signed_lot_id.into(),
            entries: vec![AttachmentEntry {
                reference,
                content: sent.to_vec(),
            }],
        };
        let der = att.to_der().unwrap();
        let arl = ins.receive_attachments(&der);
        assert_eq!(arl.merkle_root, hex::encode(Sha256::digest(&der)));
        assert_eq!(arl.lot_id, att.lot_id);
        // Delivered again: the same answer.
        assert_eq!(ins.receive_attachments(&der), arl);
        arl
    }

    #[test]
    fn an_attachment_lot_is_checked_against_the_signed_references() {
        let pdf = b"%PDF-1.4\n%%EOF\n";
        let good = judged_then(pdf, pdf, "8-00000001");
        assert_eq!(good.status, ArlStatus::Positive, "{good:?}");
        let codes = |a: &Arl| {
            a.rejections
                .iter()
                .map(|r| r.code.clone())
                .collect::<Vec<_>>()
        };
        let swapped = judged_then(pdf, b"%PDF-1.4\nother\n%%EOF\n", "8-00000001");
        assert_eq!(swapped.status, ArlStatus::Negative);
        assert_eq!(codes(&swapped), ["ATTACHMENT_HASH"]);
        assert_eq!(swapped.rejections[0].sheet_number, Some(1));
        // Named under a lot the insurer never judged.
        let stray = judged_then(pdf, pdf, "8-00000002");
        assert_eq!(codes(&stray), ["ATTACHMENT_UNREFERENCED"]);
        let malformed = Insurer::new("ins").receive_attachments(b"\x30\x00");
        assert_eq!(codes(&malformed), ["ATTACHMENT_LOT_MALFORMED"]);
    }
}
