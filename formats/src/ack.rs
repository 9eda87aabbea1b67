//! Returns from the insurers: the ARL (accusé de réception logique) for one
//! lot, positive or negative with a reason per refused sheet, and later the
//! payment return of the lot's sheets (each paid with its amount, or refused
//! with a code). Per `formats/asn1/fsed.asn` (`Arl`, `PaymentReturn`).
//!
//! Both travel in a [`SignedReturn`]: signed (Ed25519) by the insurer's key, with the insurer's
//! certificate, whose subject `serialNumber` names the insurer's code
//! ([`crate::pki::TrustStore::check_insurer`]).

use asn1_rs::{DerSequence, FromDer, OctetString, Tagged, ToDer, ToDerSequence};
use serde::{Deserialize, Serialize};

use crate::der::{bytes_n, DerError};

/// Version of the ARL encoding.
pub const ARL_VERSION: u32 = 1;

/// Positive: the lot conforms. Negative: correct and resend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArlStatus {
    /// The lot was received and conforms.
    Positive,
    /// The lot (or some of its sheets) is refused.
    Negative,
}

/// One reason for refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Sheet number concerned, or `None` for the whole lot.
    pub sheet_number: Option<u64>,
    /// Stable code (e.g. `LOT_SIGNATURE`).
    pub code: String,
    /// Readable reason.
    pub reason: String,
}

/// An ARL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arl {
    /// The lot acknowledged.
    pub lot_id: String,
    /// Echo of the lot's Merkle root, so the sender knows which content was checked.
    pub merkle_root: String,
    /// Positive or negative.
    pub status: ArlStatus,
    /// Insurer (organism) that answers.
    pub insurer: String,
    /// Time of receipt `YYYYMMDDHHMMSSZ`.
    pub received_at: String,
    /// Reasons (empty when positive).
    pub rejections: Vec<Rejection>,
}

#[derive(DerSequence, ToDerSequence)]
struct RejectionDer {
    sheet_number: i64,
    code: String,
    reason: String,
}

#[derive(DerSequence, ToDerSequence)]
struct ArlDer<'a> {
    version: u32,
    lot_id: String,
    merkle_root: OctetString<'a>,
    status: u32,
    insurer: String,
    received_at: String,
    rejections: Vec<RejectionDer>,
}

impl Arl {
    /// DER encoding.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        let root: [u8; 32] = hex::decode(&self.merkle_root)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| DerError::field("merkle_root", "not 32 bytes of hex"))?;
        let der = ArlDer {
            version: ARL_VERSION,
            lot_id: self.lot_id.clone(),
            merkle_root: OctetString::new(&root),
            status: match self.status {
                ArlStatus::Positive => 0,
                ArlStatus::Negative => 1,
            },
            insurer: self.insurer.clone(),
            received_at: self.received_at.clone(),
            rejections: self
                .rejections
                .iter()
                .map(|r| RejectionDer {
                    sheet_number: r
                        .sheet_number
                        .and_then(|n| i64::try_from(n).ok())
                        .unwrap_or(-1),
                    code: r.code.clone(),
                    reason: r.reason.clone(),
                })
                .collect(),
        };
        Ok(der.to_der_vec()?)
    }

    /// DER decoding, strict.
    pub fn from_der(bytes: &[u8]) -> Result<Arl, DerError> {
        crate::der::check_structure(bytes)?;
        let (rest, a) = ArlDer::from_der(bytes)?;
        if !rest.is_empty() {
            return Err(DerError::field("arl", "trailing bytes"));
        }
        if a.version != ARL_VERSION {
            return Err(DerError::field("version", "unsupported ARL version"));
        }
        let arl = Arl {
            lot_id: a.lot_id,
            merkle_root: hex::encode(bytes_n::<32>(a.merkle_root.as_ref(), "merkle_root")?),
            status: match a.status {
                0 => ArlStatus::Positive,
                1 => ArlStatus::Negative,
                _ => return Err(DerError::field("status", "unknown status")),
            },
            insurer: a.insurer,
            received_at: a.received_at,
            rejections: a
                .rejections
                .into_iter()
                .map(|r| Rejection {
                    sheet_number: u64::try_from(r.sheet_number).ok(),
                    code: r.code,
                    reason: r.reason,
                })
                .collect(),
        };
        crate::der::require_canonical(bytes, &arl.to_der()?, "arl")?;
        Ok(arl)
    }
}

/// Version of the payment return encoding.
pub const PAYMENT_VERSION: u32 = 1;

/// What the insurer did with one sheet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum PaymentOutcome {
    /// Paid to the practitioner.
    Paid {
        /// Amount paid, in cents.
        amount_cents: u64,
    },
    /// Refused (no payment).
    Refused {
        /// Stable code (e.g. `RIGHTS_CLOSED`).
        code: String,
        /// Readable reason, shown to the practitioner.
        reason: String,
    },
}

/// The payment of one sheet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The sheet's number (unique per practitioner, who is the lot's).
    pub sheet_number: u64,
    /// Paid or refused.
    #[serde(flatten)]
    pub outcome: PaymentOutcome,
}

/// The payment return of one acknowledged lot (it may cover only some of its sheets; the
/// rest come in a later return).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReturn {
    /// The lot its sheets came in.
    pub lot_id: String,
    /// Insurer (organism) that pays.
    pub insurer: String,
    /// Time of issue `YYYYMMDDHHMMSSZ`.
    pub issued_at: String,
    /// One entry per sheet.
    pub payments: Vec<Payment>,
}

#[derive(DerSequence, ToDerSequence)]
struct PaymentDer {
    sheet_number: u64,
    outcome: u32,
    amount_cents: u64,
    code: String,
    reason: String,
}

#[derive(DerSequence, ToDerSequence)]
struct PaymentReturnDer {
    version: u32,
    lot_id: String,
    insurer: String,
    issued_at: String,
    payments: Vec<PaymentDer>,
}

impl PaymentReturn {
    /// DER encoding.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        let der = PaymentReturnDer {
            version: PAYMENT_VERSION,
            lot_id: self.lot_id.clone(),
            insurer: self.insurer.clone(),
            issued_at: self.issued_at.clone(),
            payments: self
                .payments
                .iter()
                .map(|p| match &p.outcome {
                    PaymentOutcome::Paid { amount_cents } => PaymentDer {
                        sheet_number: p.sheet_number,
                        outcome: 0,
                        amount_cents: *amount_cents,
                        code: String::new(),
                        reason: String::new(),
                    },
                    PaymentOutcome::Refused { code, reason } => PaymentDer {
                        sheet_number: p.sheet_number,
                        outcome: 1,
                        amount_cents: 0,
                        code: code.clone(),
                        reason: reason.clone(),
                    },
                })
                .collect(),
        };
        Ok(der.to_der_vec()?)
    }

    /// DER decoding, strict: canonical DER only, a refusal carries a code, a payment none.
    pub fn from_der(bytes: &[u8]) -> Result<PaymentReturn, DerError> {
        crate::der::check_structure(bytes)?;
        let (rest, r) = PaymentReturnDer::from_der(bytes)?;
        if !rest.is_empty() {
            return Err(DerError::field("payment_return", "trailing bytes"));
        }
        if r.version != PAYMENT_VERSION {
            return Err(DerError::field(
                "version",
                "unsupported payment return version",
            ));
        }
        let payments =
            r.payments
                .into_iter()
                .map(|p| {
                    let outcome = match p.outcome {
                        0 if p.code.is_empty() && p.reason.is_empty() => PaymentOutcome::Paid {
                            amount_cents: p.amount_cents,
                        },
                        1 if !p.code.is_empty() && p.amount_cents == 0 => PaymentOutcome::Refused {
                            code: p.code,
                            reason: p.reason,
                        },
                        0 | 1 => return Err(DerError::field(
                            "payments.outcome",
                            "a payment has an amount and no code, a refusal a code and no amount",
                        )),
                        _ => return Err(DerError::field("payments.outcome", "unknown outcome")),
                    };
                    Ok(Payment {
                        sheet_number: p.sheet_number,
                        outcome,
                    })
                })
                .collect::<Result<Vec<_>, DerError>>()?;
        let ret = PaymentReturn {
            lot_id: r.lot_id,
            insurer: r.insurer,
            issued_at: r.issued_at,
            payments,
        };
        crate::der::require_canonical(bytes, &ret.to_der()?, "payment_return")?;
        Ok(ret)
    }
}

/// Version of the signed-return envelope.
pub const SIGNED_RETURN_VERSION: u32 = 1;

/// What a [`SignedReturn`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReturnContent {
    /// An ARL.
    Arl(Arl),
    /// A payment return.
    Payment(PaymentReturn),
    /// A rights answer ([`crate::rights::RightsAnswer`]), kind `rights(2)`.
    Rights(Box<crate::rights::RightsAnswer>),
}

impl ReturnContent {
    /// The lot it answers (a rights answer: the request it answers).
    pub fn lot_id(&self) -> &str {
        match self {
            ReturnContent::Arl(a) => &a.lot_id,
            ReturnContent::Payment(p) => &p.lot_id,
            ReturnContent::Rights(r) => &r.request_id,
        }
    }

    /// The insurer it says it comes from (its `insurer` field; a rights answer's organism).
    pub fn insurer(&self) -> &str {
        match self {
            ReturnContent::Arl(a) => &a.insurer,
            ReturnContent::Payment(p) => &p.insurer,
            ReturnContent::Rights(r) => &r.organism,
        }
    }

    fn kind(&self) -> u32 {
        match self {
            ReturnContent::Arl(_) => 0,
            ReturnContent::Payment(_) => 1,
            ReturnContent::Rights(_) => 2,
        }
    }

    fn to_der(&self) -> Result<Vec<u8>, DerError> {
        match self {
            ReturnContent::Arl(a) => a.to_der(),
            ReturnContent::Payment(p) => p.to_der(),
            ReturnContent::Rights(r) => r.to_der(),
        }
    }
}

/// An ARL, payment return or rights answer as it travels: signed by the insurer, with its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReturn {
    /// The ARL or payment return.
    pub content: ReturnContent,
    /// Ed25519 signature of [`SignedReturn::to_be_signed`] by the insurer's key.
    pub signature: [u8; 64],
    /// DER of the insurer's X.509 certificate.
    pub signer_certificate: Vec<u8>,
}

/// Why a [`SignedReturn`] is not to be believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReturnAuthError {
    /// The certificate is not a trusted insurer's (chain, dates, CRL, key usage, insurer code).
    #[error("signer_certificate: {0}")]
    Untrusted(String),
    /// The signature is not the certificate key's over the return.
    #[error("signature: not made by the certificate's key over this return")]
    BadSignature,
}

#[derive(DerSequence, ToDerSequence)]
struct ReturnTbsDer<'a> {
    version: u32,
    kind: u32,
    content: OctetString<'a>,
}

#[derive(DerSequence, ToDerSequence)]
struct SignedReturnDer<'a> {
    version: u32,
    kind: u32,
    content: OctetString<'a>,
    signature: OctetString<'a>,
    signer_certificate: OctetString<'a>,
}

impl SignedReturn {
    /// Signs `content` with `key`, carrying `signer_certificate` (the DER of the key's certificate).
    pub fn sign(
        content: ReturnContent,
        key: &ed25519_dalek::SigningKey,
        signer_certificate: Vec<u8>,
    ) -> Result<SignedReturn, DerError> {
        use ed25519_dalek::Signer;
        let mut ret = SignedReturn {
            content,
            signature: [0; 64],
            signer_certificate,
        };
        ret.signature = key.sign(&ret.to_be_signed()?).to_bytes();
        Ok(ret)
    }

    /// The bytes the insurer signs: DER of `ReturnToBeSigned ::= SEQUENCE { version, kind,
    /// content }`, the first three fields of the envelope (so the kind is signed too).
    pub fn to_be_signed(&self) -> Result<Vec<u8>, DerError> {
        let content = self.content.to_der()?;
        Ok(ReturnTbsDer {
            version: SIGNED_RETURN_VERSION,
            kind: self.content.kind(),
            content: OctetString::new(&content),
        }
        .to_der_vec()?)
    }

    /// DER encoding.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        let content = self.content.to_der()?;
        Ok(SignedReturnDer {
            version: SIGNED_RETURN_VERSION,
            kind: self.content.kind(),
            content: OctetString::new(&content),
            signature: OctetString::new(&self.signature),
            signer_certificate: OctetString::new(&self.signer_certificate),
        }
        .to_der_vec()?)
    }

    /// DER decoding, strict: canonical DER only, the content decoded as its kind says (no
    /// verification: see [`SignedReturn::verify`]).
    pub fn from_der(bytes: &[u8]) -> Result<SignedReturn, DerError> {
        crate::der::check_structure(bytes)?;
        let (rest, r) = SignedReturnDer::from_der(bytes)?;
        if !rest.is_empty() {
            return Err(DerError::field("signed_return", "trailing bytes"));
        }
        if r.version != SIGNED_RETURN_VERSION {
            return Err(DerError::field(
                "version",
                "unsupported signed return version",
            ));
        }
        let content = match r.kind {
            0 => ReturnContent::Arl(Arl::from_der(r.content.as_ref())?),
            1 => ReturnContent::Payment(PaymentReturn::from_der(r.content.as_ref())?),
            2 => ReturnContent::Rights(Box::new(crate::rights::RightsAnswer::from_der(
                r.content.as_ref(),
            )?)),
            _ => return Err(DerError::field("kind", "unknown return kind")),
        };
        let ret = SignedReturn {
            content,
            signature: bytes_n(r.signature.as_ref(), "signature")?,
            signer_certificate: r.signer_certificate.as_ref().to_vec(),
        };
        crate::der::require_canonical(bytes, &ret.to_der()?, "signed_return")?;
        Ok(ret)
    }

    /// Checks the certificate against `trust` at `now` (Unix seconds) as an insurer's
    /// ([`crate::pki::TrustStore::check_insurer`]) and the signature with its key; gives the
    /// insurer code the certificate names.
    pub fn verify(
        &self,
        trust: &crate::pki::TrustStore,
        now: i64,
    ) -> Result<String, ReturnAuthError> {
        let (code, key) = trust
            .check_insurer(&self.signer_certificate, now)
            .map_err(ReturnAuthError::Untrusted)?;
        let tbs = self
            .to_be_signed()
            .map_err(|_| ReturnAuthError::BadSignature)?;
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature);
        ed25519_dalek::VerifyingKey::from_bytes(&key)
            .ok()
            .filter(|k| k.verify_strict(&tbs, &signature).is_ok())
            .ok_or(ReturnAuthError::BadSignature)?;
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_returns_round_trip_and_bind_their_kind() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let ret = PaymentReturn {
            lot_id: "L-1".into(),
            insurer: "011751234".into(),
            issued_at: "20261130120000Z".into(),
            payments: vec![Payment {
                sheet_number: 3,
                outcome: PaymentOutcome::Paid { amount_cents: 1900 },
            }],
        };
        let signed =
            SignedReturn::sign(ReturnContent::Payment(ret.clone()), &key, vec![1, 2, 3]).unwrap();
        let der = signed.to_der().unwrap();
        assert_eq!(SignedReturn::from_der(&der).unwrap(), signed);
        assert_eq!(signed.content.lot_id(), "L-1");
        assert_eq!(signed.content.insurer(), "011751234");
        // The signature is over the kind too: the same content called an ARL signs otherwise.
        let tbs = signed.to_be_signed().unwrap();
        assert_eq!(tbs[0], 0x30);
        // A bare payment return (unsigned, the old wire format) is not a signed return.
        assert!(SignedReturn::from_der(&ret.to_der().unwrap()).is_err());
        // The kind must match the content: a payment return's bytes under kind "ARL" fail.
        let mut bad = der.clone();
        let at = bad
            .windows(3)
            .position(|w| w == [0x02, 0x01, 0x01])
            .and_then(|first| {
                bad[first + 3..]
                    .windows(3)
                    .position(|w| w == [0x02, 0x01, 0x01])
                    .map(|p| first + 3 + p)
            })
            .unwrap();
        bad[at + 2] = 0;
        assert!(SignedReturn::from_der(&bad).is_err());
        // Without a trust store that knows the certificate, nothing verifies.
        assert!(matches!(
            signed.verify(&crate::pki::TrustStore::new(), 1_800_000_000),
            Err(ReturnAuthError::Untrusted(_))
        ));
    }

    #[test]
    fn round_trip() {
        let arl = Arl {
            lot_id: "L-1".into(),
            merkle_root: hex::encode([7u8; 32]),
            status: ArlStatus::Negative,
            insurer: "011751234".into(),
            received_at: "20261122120000Z".into(),
            rejections: vec![
                Rejection {
                    sheet_number: None,
                    code: "LOT_SIGNATURE".into(),
                    reason: "bad".into(),
                },
                Rejection {
                    sheet_number: Some(12),
                    code: "SHARES".into(),
                    reason: "AMO share".into(),
                },
            ],
        };
        assert_eq!(Arl::from_der(&arl.to_der().unwrap()).unwrap(), arl);
        assert!(Arl::from_der(&[0x30, 0x01, 0x02]).is_err());
    }

    #[test]
    fn payment_returns_round_trip_and_refuse_mixed_outcomes() {
        let ret = PaymentReturn {
            lot_id: "L-1".into(),
            insurer: "011751234".into(),
            issued_at: "20261130120000Z".into(),
            payments: vec![
                Payment {
                    sheet_number: 3,
                    outcome: PaymentOutcome::Paid { amount_cents: 1900 },
                },
                Payment {
                    sheet_number: 4,
                    outcome: PaymentOutcome::Refused {
                        code: "RIGHTS_CLOSED".into(),
                        reason: "droits fermés".into(),
                    },
                },
            ],
        };
        let der = ret.to_der().unwrap();
        assert_eq!(PaymentReturn::from_der(&der).unwrap(), ret);
        let json = serde_json::to_value(&ret.payments[1]).unwrap();
        assert_eq!(json["outcome"], "refused");
        assert_eq!(json["code"], "RIGHTS_CLOSED");
        // A refusal without its code is not a payment return fsed accepts.
        let mut bad = ret.clone();
        bad.payments[1].outcome = PaymentOutcome::Refused {
            code: String::new(),
            reason: "x".into(),
        };
        let err = PaymentReturn::from_der(&bad.to_der().unwrap()).unwrap_err();
        assert!(err.to_string().contains("payments.outcome"), "{err}");
        assert!(
            Arl::from_der(&der).is_err(),
            "an ARL decoder refuses a payment return"
        );
    }
}
