//! Acknowledgements: the insurer's ARL (accusé de réception logique) for one
//! lot, positive or negative with a reason per refused sheet. Per
//! `formats/asn1/fsed.asn` (`Arl`).

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
