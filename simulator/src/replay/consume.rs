//! The consumer side of the replay, as fsed's `returns` does it: every signed ARL and payment
//! return decoded, its insurer certificate checked under the trust store (once per
//! certificate), its signature verified (in batches, one by one when a batch fails), then
//! counted.

use std::collections::{BTreeMap, HashMap};

use fse_formats::ack::{ArlStatus, PaymentOutcome, ReturnContent, SignedReturn};
use fse_formats::pki::TrustStore;

use super::batch::{self, Item};

/// Returns verified together.
pub const BATCH: usize = 64;

/// What the consumer counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Consumed {
    /// ARLs verified and applied.
    pub arls: u64,
    /// Of them, positive.
    pub arls_positive: u64,
    /// Of them, negative.
    pub arls_negative: u64,
    /// Payment returns verified and applied.
    pub payment_returns: u64,
    /// Sheets paid.
    pub payments: u64,
    /// Their amounts, cents.
    pub paid_cents: u64,
    /// Sheets whose payment was refused.
    pub payments_refused: u64,
    /// Returns that did not decode or verify (untrusted certificate, bad signature).
    pub untrusted: u64,
    /// Rejections in the negative ARLs, by code.
    pub rejections: BTreeMap<String, u64>,
}

/// The consumer: the trust store, the insurers' certificates already checked, the counts.
pub struct Consumer<'a> {
    trust: &'a TrustStore,
    now: i64,
    insurers: HashMap<Vec<u8>, Option<[u8; 32]>>,
    pending: Vec<(SignedReturn, Vec<u8>, [u8; 32])>,
    /// The counts so far.
    pub counts: Consumed,
}

impl<'a> Consumer<'a> {
    /// A consumer trusting `trust` at `now` (Unix seconds).
    pub fn new(trust: &'a TrustStore, now: i64) -> Self {
        Consumer {
            trust,
            now,
            insurers: HashMap::new(),
            pending: Vec::with_capacity(BATCH),
            counts: Consumed::default(),
        }
    }

    /// Takes one signed return's DER; verifies a batch when one is full.
    pub fn take(&mut self, der: &[u8]) {
        let Ok(ret) = SignedReturn::from_der(der) else {
            self.counts.untrusted += 1;
            return;
        };
        let key = match self.insurers.get(&ret.signer_certificate) {
            Some(k) => *k,
            None => {
                let k = self
                    .trust
                    .check_insurer(&ret.signer_certificate, self.now)
                    .ok()
                    .map(|(_, key)| key);
                self.insurers.insert(ret.signer_certificate.clone(), k);
                k
            }
        };
        let (Some(key), Ok(tbs)) = (key, ret.to_be_signed()) else {
            self.counts.untrusted += 1;
            return;
        };
        self.pending.push((ret, tbs, key));
        if self.pending.len() >= BATCH {
            self.flush();
        }
    }

    /// Verifies and counts what is pending.
    pub fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let items: Vec<Item<'_>> = pending
            .iter()
            .map(|(ret, tbs, key)| Item {
                key,
                message: tbs,
                signature: &ret.signature,
            })
            .collect();
        let all = batch::verify_batch(&items);
        for (i, (ret, _, _)) in pending.iter().enumerate() {
            if all || batch::verify_one(&items[i]) {
                self.count(ret);
            } else {
                self.counts.untrusted += 1;
            }
        }
        self.pending = pending;
        self.pending.clear();
    }

    fn count(&mut self, ret: &SignedReturn) {
        let c = &mut self.counts;
        match &ret.content {
            ReturnContent::Arl(arl) => {
                c.arls += 1;
                match arl.status {
                    ArlStatus::Positive => c.arls_positive += 1,
                    ArlStatus::Negative => c.arls_negative += 1,
                }
                for r in &arl.rejections {
                    *c.rejections.entry(r.code.clone()).or_default() += 1;
                }
            }
            ReturnContent::Payment(p) => {
                c.payment_returns += 1;
                for pay in &p.payments {
                    match pay.outcome {
                        PaymentOutcome::Paid { amount_cents } => {
                            c.payments += 1;
                            c.paid_cents += amount_cents;
                        }
                        PaymentOutcome::Refused { .. } => c.payments_refused += 1,
                    }
                }
            }
            ReturnContent::Rights(_) => c.untrusted += 1,
        }
    }
}
