//! The returns the insurer sends: the payment return prepared after an ARL, and the
//! signature of every ARL and payment return under the test PKI.

use std::collections::BTreeMap;
use std::sync::Mutex;

use fse_formats::ack::{Arl, Payment, PaymentOutcome, PaymentReturn, ReturnContent, SignedReturn};

use super::Insurer;

/// The DER of `content` signed as the insurer its `insurer` field names: the key of
/// [`crate::pki::insurer_key`], with the certificate the test PKI makes for that code (made
/// once per code and process).
pub fn sign_return(content: ReturnContent) -> Result<Vec<u8>, String> {
    let code = content.insurer().to_string();
    sign_return_as(content, &code)
}

/// The DER of `content` signed with the key and certificate of insurer `code`, whatever
/// insurer the content names (a test platform's wrong signer).
pub fn sign_return_as(content: ReturnContent, code: &str) -> Result<Vec<u8>, String> {
    static CERTIFICATES: Mutex<BTreeMap<String, Vec<u8>>> = Mutex::new(BTreeMap::new());
    let code = code.to_string();
    let cached = CERTIFICATES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&code)
        .cloned();
    let cert = match cached {
        Some(c) => c,
        None => {
            let c = crate::pki::TestPki::shared()?
                .insurer_certificate(&code)
                .map_err(|e| format!("insurer certificate of {code}: {e}"))?;
            CERTIFICATES
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(code.clone(), c.clone());
            c
        }
    };
    SignedReturn::sign(content, &crate::pki::insurer_key(&code), cert)
        .and_then(|s| s.to_der())
        .map_err(|e| format!("signed return encoding: {e}"))
}

impl Insurer {
    /// Prepares the payment return of the sheets `arl` acknowledges (none when it refuses
    /// the whole lot): each paid its AMO share, or refused at the knob's rate.
    pub(super) fn payments_for(&mut self, arl: &Arl, sheets: &[(u64, u64)], now: &str) {
        if arl.rejections.iter().any(|r| r.sheet_number.is_none()) {
            return;
        }
        let refused: std::collections::HashSet<u64> = arl
            .rejections
            .iter()
            .filter_map(|r| r.sheet_number)
            .collect();
        let mut payments = Vec::new();
        for (number, amo) in sheets.iter().filter(|(n, _)| !refused.contains(n)) {
            let outcome = if self.draw(self.knobs.refuse_payments_percent) {
                self.report.refused += 1;
                PaymentOutcome::Refused {
                    code: "TEST_REFUSED".into(),
                    reason: "payment refused by the simulator (test knob)".into(),
                }
            } else {
                self.report.paid += 1;
                PaymentOutcome::Paid { amount_cents: *amo }
            };
            payments.push(Payment {
                sheet_number: *number,
                outcome,
            });
        }
        if !payments.is_empty() {
            let issued_at = self
                .knobs
                .pay_after_working_days
                .and_then(|n| super::late::payment_issued_at(&arl.received_at, n))
                .unwrap_or_else(|| now.to_string());
            self.payments.insert(
                arl.lot_id.clone(),
                PaymentReturn {
                    lot_id: arl.lot_id.clone(),
                    insurer: arl.insurer.clone(),
                    issued_at,
                    payments,
                },
            );
        }
    }
}
