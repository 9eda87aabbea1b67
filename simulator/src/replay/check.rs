//! The insurer's side of one lot in the replay: the same checks as the insurer simulator's
//! `judge`, made fast, then the ARL and the payment return signed.
//!
//! Fast path: the signer's certificate checked once per certificate and key (a bounded cache
//! shared by the workers); count and Merkle root; the CPS signature and every sheet's proof of
//! presence verified together in one batch ([`super::batch`]); every sheet decoded, its
//! practitioner matched, its shares re-priced and an app sheet's token checked
//! (`judge::sheet_rejections`). Whatever the fast path does not accept — a refused
//! certificate, a wrong count or root, a failed batch, a sheet that does not decode — goes to
//! the insurer simulator's own `judge`, one signature at a time, which names the culprit and
//! its code: a damaged lot is a negative ARL, never a crash.

use std::collections::HashMap;
use std::sync::Mutex;

use ed25519_dalek::SigningKey;
use fse_formats::ack::{
    Arl, ArlStatus, Payment, PaymentOutcome, PaymentReturn, ReturnContent, SignedReturn,
};
use fse_formats::fse::{CareSheet, Mode};
use fse_formats::lot::SignedLot;
use fse_formats::pki::TrustStore;
use sha2::{Digest, Sha256};

use super::batch::{self, Item};
use crate::insurer::judge;

/// Certificates remembered at most before the cache starts afresh (bounded memory; lots of a
/// practitioner are written together, so a fresh cache costs little).
const CERT_CACHE: usize = 65_536;

/// The verdicts on signer certificates, by SHA-256 of certificate and key.
#[derive(Default)]
pub struct CertCache {
    verdicts: Mutex<HashMap<[u8; 32], bool>>,
}

impl CertCache {
    fn trusted(&self, trust: &TrustStore, cert: &[u8], key: &[u8; 32], now: i64) -> bool {
        let id: [u8; 32] = Sha256::new()
            .chain_update(key)
            .chain_update(cert)
            .finalize()
            .into();
        let known = self
            .verdicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied();
        if let Some(ok) = known {
            return ok;
        }
        let ok = trust.check(cert, key, now).refusal().is_none();
        let mut verdicts = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        if verdicts.len() >= CERT_CACHE {
            verdicts.clear();
        }
        verdicts.insert(id, ok);
        ok
    }
}

/// What a worker needs to judge lots: the trust store, the certificate cache, the time.
pub struct Judge<'a> {
    /// The insurer's trust store (the test PKI's root, CAs and CRLs).
    pub trust: &'a TrustStore,
    /// Shared verdicts on certificates.
    pub certs: &'a CertCache,
    /// Time of receipt, Unix seconds.
    pub now: i64,
    /// The same, `YYYYMMDDHHMMSSZ`.
    pub now_text: String,
    /// Signing keys and certificates of the insurers answering, by organism code.
    pub insurers: HashMap<String, (SigningKey, Vec<u8>)>,
}

/// One lot judged: what was checked and the signed returns.
pub struct Judged {
    /// Sheets in the lot (0 when it does not decode).
    pub sheets: u64,
    /// Sheets of a lot the checks passed (sheet-level refusals aside).
    pub verified: u64,
    /// Whether the batch path accepted it (else the single checks judged it).
    pub fast: bool,
    /// DER of the signed ARL.
    pub arl: Vec<u8>,
    /// DER of the signed payment return, when any sheet is paid.
    pub payment: Option<Vec<u8>>,
}

impl Judge<'_> {
    /// The fast path: the lot's sheets when every check passes, `None` to ask `judge`.
    fn fast(&self, lot: &SignedLot) -> Option<Vec<CareSheet>> {
        let cert = lot.signer_certificate.as_deref()?;
        let header = &lot.header;
        if !self
            .certs
            .trusted(self.trust, cert, &header.signer_key, self.now)
            || lot.entries.len() as u64 != header.sheet_count
            || fse_formats::merkle::root(&fse_formats::lot::leaves(&lot.entries))
                != header.merkle_root
        {
            return None;
        }
        let header_der = header.to_der().ok()?;
        let mut sheets = Vec::with_capacity(lot.entries.len());
        let mut proofs: Vec<([u8; 32], [u8; 32], [u8; 64])> = Vec::with_capacity(sheets.len());
        for entry in &lot.entries {
            let sheet = CareSheet::from_der(&entry.sheet).ok()?;
            if sheet.practitioner.national_id != header.practitioner_id {
                return None;
            }
            match (sheet.mode, &sheet.presence, &sheet.app_presence) {
                (Mode::Secured, Some(p), None) => {
                    let mut key = [0u8; 32];
                    let mut sig = [0u8; 64];
                    hex::decode_to_slice(&p.public_key, &mut key).ok()?;
                    hex::decode_to_slice(&p.signature, &mut sig).ok()?;
                    proofs.push((key, sheet.presence_challenge().ok()?, sig));
                }
                // Degraded and app sheets carry no card signature: their own checks.
                _ => sheet.verify_presence().ok()?,
            }
            sheets.push(sheet);
        }
        let mut items = Vec::with_capacity(proofs.len() + 1);
        items.push(Item {
            key: &header.signer_key,
            message: &header_der,
            signature: &lot.signature,
        });
        items.extend(proofs.iter().map(|(key, challenge, signature)| Item {
            key,
            message: challenge,
            signature,
        }));
        batch::verify_batch(&items).then_some(sheets)
    }

    /// Judges the lot `bytes` and signs the ARL and payment return of `destination`'s
    /// insurer (the lot's own destination; `fallback_insurer` when it does not decode).
    pub fn lot(&mut self, bytes: &[u8], fallback_insurer: &str) -> Result<Judged, String> {
        let decoded = SignedLot::from_der(bytes);
        let insurer = decoded
            .as_ref()
            .map(|l| l.header.destination.clone())
            .unwrap_or_else(|_| fallback_insurer.to_string());
        let quick = decoded.as_ref().ok().and_then(|l| self.fast(l));
        let (sheets, verified, accepted, arl, fast) = match (quick, decoded) {
            (Some(sheets), Ok(lot)) => {
                let rejections = judge::sheet_rejections(&sheets, Some(self.trust));
                let amounts: Vec<(u64, u64)> = sheets
                    .iter()
                    .map(|s| (s.number, s.amounts.amo_cents))
                    .collect();
                let arl = Arl {
                    lot_id: lot.header.lot_id.clone(),
                    merkle_root: hex::encode(lot.header.merkle_root),
                    status: if rejections.is_empty() {
                        ArlStatus::Positive
                    } else {
                        ArlStatus::Negative
                    },
                    insurer: insurer.clone(),
                    received_at: self.now_text.clone(),
                    rejections,
                };
                let n = sheets.len() as u64;
                (n, n, amounts, arl, true)
            }
            (_, decoded) => {
                let amounts: Vec<(u64, u64)> = decoded
                    .as_ref()
                    .map(|lot| {
                        lot.entries
                            .iter()
                            .filter_map(|e| CareSheet::from_der(&e.sheet).ok())
                            .map(|s| (s.number, s.amounts.amo_cents))
                            .collect()
                    })
                    .unwrap_or_default();
                let n = decoded.as_ref().map_or(0, |l| l.entries.len() as u64);
                let arl = judge::judge(decoded, &insurer, &self.now_text, Some(self.trust));
                // The lot's checks failed when a rejection is the lot's or a sheet's proof.
                let failed = arl
                    .rejections
                    .iter()
                    .any(|r| r.sheet_number.is_none() || r.code == "SHEET_INVALID");
                (n, if failed { 0 } else { n }, amounts, arl, false)
            }
        };
        let payment = payments(&arl, &accepted, &self.now_text);
        let arl_der = self.sign(ReturnContent::Arl(arl), &insurer)?;
        let payment = payment
            .map(|p| self.sign(ReturnContent::Payment(p), &insurer))
            .transpose()?;
        Ok(Judged {
            sheets,
            verified,
            fast,
            arl: arl_der,
            payment,
        })
    }

    fn sign(&mut self, content: ReturnContent, insurer: &str) -> Result<Vec<u8>, String> {
        if !self.insurers.contains_key(insurer) {
            let cert = crate::pki::TestPki::shared()?
                .insurer_certificate(insurer)
                .map_err(|e| format!("insurer certificate of {insurer}: {e}"))?;
            self.insurers.insert(
                insurer.to_string(),
                (crate::pki::insurer_key(insurer), cert),
            );
        }
        let (key, cert) = self
            .insurers
            .get(insurer)
            .ok_or_else(|| format!("insurer {insurer}: no key"))?;
        SignedReturn::sign(content, key, cert.clone())
            .and_then(|s| s.to_der())
            .map_err(|e| format!("signed return of {insurer}: {e}"))
    }
}

/// The payment return of the sheets `arl` acknowledges, as the insurer simulator makes it:
/// none when the lot is refused whole, else every sheet not refused paid its AMO share.
fn payments(arl: &Arl, sheets: &[(u64, u64)], now: &str) -> Option<PaymentReturn> {
    if arl.rejections.iter().any(|r| r.sheet_number.is_none()) {
        return None;
    }
    let refused: std::collections::HashSet<u64> = arl
        .rejections
        .iter()
        .filter_map(|r| r.sheet_number)
        .collect();
    let payments: Vec<Payment> = sheets
        .iter()
        .filter(|(n, _)| !refused.contains(n))
        .map(|(number, amo)| Payment {
            sheet_number: *number,
            outcome: PaymentOutcome::Paid { amount_cents: *amo },
        })
        .collect();
    (!payments.is_empty()).then(|| PaymentReturn {
        lot_id: arl.lot_id.clone(),
        insurer: arl.insurer.clone(),
        issued_at: now.to_string(),
        payments,
    })
}
