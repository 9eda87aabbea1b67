//! Lots: the signed batch of sheets sent to one destination. The CPS signs
//! the DER `LotHeader` (which holds the Merkle root of the salted sheets) once;
//! `SignedLot` carries header, signature and entries (salt + sheet DER).
//! Per `formats/asn1/fsed.asn` (`LotHeader`, `SignedLot`).

use asn1_rs::{DerSequence, FromDer, OctetString, Tagged, ToDer, ToDerSequence};
use thiserror::Error;

use crate::attachment::AttachmentRef;
use crate::der::{bytes_n, DerError};
use crate::fse::CareSheet;
use crate::merkle::{self, Hash};

/// Version of the lot header encoding without attachments.
pub const LOT_VERSION: u32 = 1;
/// Version of a lot header that references attachments (a trailing `attachments` list, never
/// empty: a header without any is version 1, byte for byte).
pub const LOT_VERSION_ATTACHMENTS: u32 = 2;
/// Salt length per leaf.
pub const SALT_LEN: usize = 16;

/// The signed part of a lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotHeader {
    /// Lot identifier, unique across the practice (also the broker `message_id`).
    pub lot_id: String,
    /// Lot number, per practitioner.
    pub number: u64,
    /// National id of the signing practitioner.
    pub practitioner_id: String,
    /// Destination organism code.
    pub destination: String,
    /// Number of sheets.
    pub sheet_count: u64,
    /// Merkle root over the salted sheets.
    pub merkle_root: Hash,
    /// Closing time `YYYYMMDDHHMMSSZ`.
    pub closed_at: String,
    /// Serial of the signing CPS.
    pub cps_serial: String,
    /// Ed25519 public key of the signing CPS.
    pub signer_key: [u8; 32],
    /// The supporting documents this lot references (their hashes, under the CPS signature);
    /// empty: a version 1 header.
    pub attachments: Vec<AttachmentRef>,
}

/// One sheet in a lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotEntry {
    /// Random salt of the leaf.
    pub salt: [u8; SALT_LEN],
    /// DER of the sheet.
    pub sheet: Vec<u8>,
}

/// A lot with its CPS signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedLot {
    /// The signed header.
    pub header: LotHeader,
    /// Ed25519 signature of DER(header) by the CPS.
    pub signature: [u8; 64],
    /// The sheets, in leaf order.
    pub entries: Vec<LotEntry>,
    /// DER of the signing CPS's X.509 certificate, so the insurer can check its chain and
    /// CRL (absent in lots signed by a card without one).
    pub signer_certificate: Option<Vec<u8>>,
}

/// Why a lot does not verify.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LotError {
    /// Malformed encoding.
    #[error(transparent)]
    Der(#[from] DerError),
    /// Header count differs from the entries.
    #[error("header announces {announced} sheets, lot holds {held}")]
    Count {
        /// In the header.
        announced: u64,
        /// In the lot.
        held: u64,
    },
    /// The recomputed Merkle root differs.
    #[error("Merkle root mismatch: a sheet was altered, added or removed")]
    Root,
    /// The CPS signature does not verify.
    #[error("lot signature does not verify")]
    Signature,
    /// The signer's certificate is missing or not trusted.
    #[error("signer certificate: {0}")]
    Certificate(String),
    /// The sheet's audit path does not lead to the signed root.
    #[error("the sheet's inclusion proof does not lead to the signed Merkle root")]
    Inclusion,
    /// A sheet inside does not decode or fails its proof of presence.
    #[error("sheet {index}: {reason}")]
    Sheet {
        /// Leaf index.
        index: usize,
        /// Why.
        reason: String,
    },
}

/// One sheet with what proves, alone, that its practitioner's CPS signed it in a lot: the
/// signed header, the signature, the leaf's salt and index, and its RFC 9162 audit path. Binary
/// fields are hex.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SheetProof {
    /// DER of the signed lot header.
    pub header: String,
    /// The CPS's Ed25519 signature over it.
    pub signature: String,
    /// Leaf index of the sheet in the lot.
    pub index: u64,
    /// The leaf's salt.
    pub salt: String,
    /// Audit path, bottom-up.
    pub path: Vec<String>,
    /// DER of the sheet.
    pub sheet: String,
    /// DER of the signing CPS's certificate, when known.
    #[serde(default)]
    pub signer_certificate: Option<String>,
}

fn unhex(s: &str, field: &'static str) -> Result<Vec<u8>, LotError> {
    hex::decode(s).map_err(|_| LotError::Der(DerError::field(field, "not hex")))
}

impl SheetProof {
    /// Verifies the sheet alone: the header's signature by its signer key, the sheet's leaf up
    /// its audit path to the signed root, the sheet's decoding, proof of presence and
    /// practitioner; and, given a trust store, the signer's certificate at `now` (Unix seconds)
    /// — chain, dates, CRLs and key. Returns the sheet.
    pub fn verify(
        &self,
        trust: Option<&crate::pki::TrustStore>,
        now: i64,
    ) -> Result<CareSheet, LotError> {
        let header_der = unhex(&self.header, "header")?;
        let header = LotHeader::from_der(&header_der)?;
        let signature = unhex(&self.signature, "signature")?;
        if !crate::cards::verify_signature(&header.signer_key, &header_der, &signature) {
            return Err(LotError::Signature);
        }
        let salt = unhex(&self.salt, "salt")?;
        let sheet_der = unhex(&self.sheet, "sheet")?;
        let path = self
            .path
            .iter()
            .map(|h| {
                unhex(h, "path").and_then(|v| bytes_n::<32>(&v, "path").map_err(LotError::from))
            })
            .collect::<Result<Vec<Hash>, LotError>>()?;
        let leaf = merkle::leaf_hash(&salt, &sheet_der);
        if !merkle::verify_inclusion(
            &leaf,
            self.index,
            header.sheet_count,
            &path,
            &header.merkle_root,
        ) {
            return Err(LotError::Inclusion);
        }
        let sheet = CareSheet::from_der(&sheet_der)?;
        let index = usize::try_from(self.index).unwrap_or(usize::MAX);
        sheet.verify_presence().map_err(|e| LotError::Sheet {
            index,
            reason: e.to_string(),
        })?;
        if sheet.practitioner.national_id != header.practitioner_id {
            return Err(LotError::Sheet {
                index,
                reason: "sheet made by another practitioner".into(),
            });
        }
        if let Some(trust) = trust {
            let cert = self
                .signer_certificate
                .as_deref()
                .ok_or_else(|| LotError::Certificate("absent".into()))?;
            let check = trust.check(&unhex(cert, "signer_certificate")?, &header.signer_key, now);
            if let Some(why) = check.refusal() {
                return Err(LotError::Certificate(why));
            }
        }
        Ok(sheet)
    }
}

#[derive(DerSequence, ToDerSequence)]
struct HeaderDer<'a> {
    version: u32,
    lot_id: String,
    number: u64,
    practitioner_id: String,
    destination: String,
    sheet_count: u64,
    merkle_root: OctetString<'a>,
    closed_at: String,
    cps_serial: String,
    signer_key: OctetString<'a>,
}

#[derive(DerSequence, ToDerSequence)]
struct EntryDer<'a> {
    salt: OctetString<'a>,
    sheet: OctetString<'a>,
}

impl LotHeader {
    /// DER of the header: the bytes the CPS signs.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        let v1 = self.as_der().to_der_vec()?;
        if self.attachments.is_empty() {
            return Ok(v1);
        }
        // Version 2: the version 1 fields, then the attachments list.
        let (_, seq) = asn1_rs::Sequence::from_der(&v1)?;
        let mut content = seq.content.as_ref().to_vec();
        content.extend(AttachmentRef::list_to_der(&self.attachments)?);
        Ok(crate::der::sequence(&content))
    }

    fn as_der(&self) -> HeaderDer<'_> {
        HeaderDer {
            version: if self.attachments.is_empty() {
                LOT_VERSION
            } else {
                LOT_VERSION_ATTACHMENTS
            },
            lot_id: self.lot_id.clone(),
            number: self.number,
            practitioner_id: self.practitioner_id.clone(),
            destination: self.destination.clone(),
            sheet_count: self.sheet_count,
            merkle_root: OctetString::new(&self.merkle_root),
            closed_at: self.closed_at.clone(),
            cps_serial: self.cps_serial.clone(),
            signer_key: OctetString::new(&self.signer_key),
        }
    }

    /// Decodes the header at the start of `input`; returns it and what follows. A version 2
    /// header is the version 1 fields and a trailing non-empty `attachments` list.
    fn take(input: &[u8]) -> Result<(Self, &[u8]), DerError> {
        let (rest, seq) = asn1_rs::Sequence::from_der(input)?;
        let fields = crate::der::values(seq.content.as_ref())?;
        let (first, attachments) = match fields.as_slice() {
            [first @ .., (0x30, last, _)] if first.len() == 10 => (first, Some(*last)),
            all => (all, None),
        };
        let v1: Vec<u8> = first.iter().flat_map(|f| f.1.iter().copied()).collect();
        let v1 = crate::der::sequence(&v1);
        let (after, h) = HeaderDer::from_der(&v1)?;
        if !after.is_empty() {
            return Err(DerError::field("header", "trailing bytes"));
        }
        let version = h.version;
        let mut header = Self::from_der_struct(h)?;
        match (version, attachments) {
            (LOT_VERSION, None) => {}
            (LOT_VERSION_ATTACHMENTS, Some(list)) => {
                header.attachments = AttachmentRef::list_from_der(list)?;
                if header.attachments.is_empty() {
                    return Err(DerError::field(
                        "header.attachments",
                        "empty in a version 2 header (a header without any is version 1)",
                    ));
                }
            }
            _ => return Err(DerError::field("header.version", "unsupported lot version")),
        }
        Ok((header, rest))
    }

    fn from_der_struct(h: HeaderDer<'_>) -> Result<Self, DerError> {
        if h.version != LOT_VERSION && h.version != LOT_VERSION_ATTACHMENTS {
            return Err(DerError::field("header.version", "unsupported lot version"));
        }
        Ok(LotHeader {
            lot_id: h.lot_id,
            number: h.number,
            practitioner_id: h.practitioner_id,
            destination: h.destination,
            sheet_count: h.sheet_count,
            merkle_root: bytes_n(h.merkle_root.as_ref(), "header.merkle_root")?,
            closed_at: h.closed_at,
            cps_serial: h.cps_serial,
            signer_key: bytes_n(h.signer_key.as_ref(), "header.signer_key")?,
            attachments: Vec::new(),
        })
    }

    /// Decodes a header.
    pub fn from_der(bytes: &[u8]) -> Result<Self, DerError> {
        crate::der::check_structure(bytes)?;
        let (header, rest) = Self::take(bytes)?;
        if !rest.is_empty() {
            return Err(DerError::field("header", "trailing bytes"));
        }
        crate::der::require_canonical(bytes, &header.to_der()?, "header")?;
        Ok(header)
    }
}

/// The leaf hashes of a list of entries.
pub fn leaves(entries: &[LotEntry]) -> Vec<Hash> {
    entries
        .iter()
        .map(|e| merkle::leaf_hash(&e.salt, &e.sheet))
        .collect()
}

impl SignedLot {
    /// DER: `SEQUENCE { header LotHeader, signature OCTET STRING, entries SEQUENCE OF LotEntry,
    /// signerCertificate [0] IMPLICIT OCTET STRING OPTIONAL }`.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        let mut content = self.header.to_der()?;
        content.extend(OctetString::new(&self.signature).to_der_vec()?);
        let entries: Vec<EntryDer> = self
            .entries
            .iter()
            .map(|e| EntryDer {
                salt: OctetString::new(&e.salt),
                sheet: OctetString::new(&e.sheet),
            })
            .collect();
        content.extend(entries.to_der_vec()?);
        if let Some(cert) = &self.signer_certificate {
            let mut w = crate::der::Writer::with_capacity(cert.len() + 4);
            w.implicit(0x80, cert);
            content.extend(w.finish());
        }
        Ok(crate::der::sequence(&content))
    }

    /// Decodes a signed lot (no verification: see [`SignedLot::verify`]).
    pub fn from_der(bytes: &[u8]) -> Result<Self, DerError> {
        crate::der::check_structure(bytes)?;
        let (rest, seq) = asn1_rs::Sequence::from_der(bytes)?;
        if !rest.is_empty() {
            return Err(DerError::field("lot", "trailing bytes"));
        }
        let inner = seq.content.as_ref();
        let (header, inner) = LotHeader::take(inner)?;
        let (inner, sig) = OctetString::from_der(inner)?;
        let (inner, entries) = <Vec<EntryDer>>::from_der(inner)?;
        let signer_certificate = match crate::der::values(inner)?.as_slice() {
            [] => None,
            [(0x80, _, cert)] => Some(cert.to_vec()),
            _ => return Err(DerError::field("lot", "trailing fields")),
        };
        let entries = entries
            .into_iter()
            .map(|e| {
                Ok(LotEntry {
                    salt: bytes_n(e.salt.as_ref(), "entry.salt")?,
                    sheet: e.sheet.as_ref().to_vec(),
                })
            })
            .collect::<Result<Vec<_>, DerError>>()?;
        let lot = SignedLot {
            header,
            signature: bytes_n(sig.as_ref(), "signature")?,
            entries,
            signer_certificate,
        };
        crate::der::require_canonical(bytes, &lot.to_der()?, "lot")?;
        Ok(lot)
    }

    /// The proof of the sheet at leaf `index`, to verify it alone ([`SheetProof::verify`]).
    pub fn proof(
        &self,
        index: usize,
        signer_certificate: Option<&[u8]>,
    ) -> Result<SheetProof, LotError> {
        let entry = self.entries.get(index).ok_or(LotError::Sheet {
            index,
            reason: "no such leaf".into(),
        })?;
        let path =
            merkle::inclusion_proof(&leaves(&self.entries), index).ok_or(LotError::Sheet {
                index,
                reason: "no such leaf".into(),
            })?;
        Ok(SheetProof {
            header: hex::encode(self.header.to_der()?),
            signature: hex::encode(self.signature),
            index: index as u64,
            salt: hex::encode(entry.salt),
            path: path.iter().map(hex::encode).collect(),
            sheet: hex::encode(&entry.sheet),
            signer_certificate: signer_certificate.map(hex::encode),
        })
    }

    /// [`SignedLot::verify`], and the signer's certificate against `trust` at `now` (Unix
    /// seconds): chain, dates, CRLs, and the key the header names.
    pub fn verify_trusted(
        &self,
        trust: &crate::pki::TrustStore,
        signer_certificate: &[u8],
        now: i64,
    ) -> Result<Vec<CareSheet>, LotError> {
        let check = trust.check(signer_certificate, &self.header.signer_key, now);
        if let Some(why) = check.refusal() {
            return Err(LotError::Certificate(why));
        }
        self.verify()
    }

    /// Verifies count, Merkle root, CPS signature, and every sheet's decoding and proof of presence.
    ///
    /// Trust in `header.signer_key` (certificate chain, CRL) is the caller's: see
    /// [`SignedLot::verify_trusted`].
    pub fn verify(&self) -> Result<Vec<CareSheet>, LotError> {
        let held = self.entries.len() as u64;
        if held != self.header.sheet_count {
            return Err(LotError::Count {
                announced: self.header.sheet_count,
                held,
            });
        }
        if merkle::root(&leaves(&self.entries)) != self.header.merkle_root {
            return Err(LotError::Root);
        }
        if !crate::cards::verify_signature(
            &self.header.signer_key,
            &self.header.to_der()?,
            &self.signature,
        ) {
            return Err(LotError::Signature);
        }
        self.entries
            .iter()
            .enumerate()
            .map(|(index, e)| {
                let sheet = CareSheet::from_der(&e.sheet).map_err(|err| LotError::Sheet {
                    index,
                    reason: err.to_string(),
                })?;
                sheet.verify_presence().map_err(|err| LotError::Sheet {
                    index,
                    reason: err.to_string(),
                })?;
                if sheet.practitioner.national_id != self.header.practitioner_id {
                    return Err(LotError::Sheet {
                        index,
                        reason: "sheet made by another practitioner".into(),
                    });
                }
                Ok(sheet)
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    /// A signed lot of `n` sample sheets.
    pub(crate) fn lot(n: usize) -> SignedLot {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let entries: Vec<LotEntry> = (0..n)
            .map(|i| {
                let mut s = crate::fse::CareSheet::sample(42);
                s.number = i as u64;
                LotEntry {
                    salt: [i as u8; SALT_LEN],
                    sheet: s.to_der().unwrap(),
                }
            })
            .collect();
        let header = LotHeader {
            lot_id: "L-1".into(),
            number: 1,
            practitioner_id: "810101234567".into(),
            destination: "011751234".into(),
            sheet_count: n as u64,
            merkle_root: merkle::root(&leaves(&entries)),
            closed_at: "20261122120000Z".into(),
            cps_serial: "CPS0001".into(),
            signer_key: key.verifying_key().to_bytes(),
            attachments: Vec::new(),
        };
        let signature = key.sign(&header.to_der().unwrap()).to_bytes();
        SignedLot {
            header,
            signature,
            entries,
            signer_certificate: None,
        }
    }

    #[test]
    fn round_trip_and_verify() {
        let mut l = lot(5);
        let der = l.to_der().unwrap();
        let back = SignedLot::from_der(&der).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.verify().unwrap().len(), 5);
        // With the signer's certificate carried at the end.
        l.signer_certificate = Some(vec![0x30, 0x03, 0x02, 0x01, 0x07]);
        let der2 = l.to_der().unwrap();
        assert_eq!(
            &der2[der2.len() - 7..],
            &[0x80, 0x05, 0x30, 0x03, 0x02, 0x01, 0x07]
        );
        assert_eq!(SignedLot::from_der(&der2).unwrap(), l);
    }

    #[test]
    fn one_sheet_verifies_alone_with_its_proof_and_a_tampered_one_does_not() {
        let l = lot(5);
        for i in 0..5 {
            let proof = l.proof(i, None).unwrap();
            let sheet = proof.verify(None, 0).unwrap();
            assert_eq!(sheet.to_der().unwrap(), l.entries[i].sheet);
        }
        let good = l.proof(3, None).unwrap();
        let mut t = good.clone();
        let mut sheet = hex::decode(&t.sheet).unwrap();
        let last = sheet.len() - 1;
        sheet[last] ^= 1;
        t.sheet = hex::encode(sheet);
        assert_eq!(t.verify(None, 0).unwrap_err(), LotError::Inclusion);
        let mut t = good.clone();
        t.index = 2;
        assert_eq!(t.verify(None, 0).unwrap_err(), LotError::Inclusion);
        let mut t = good.clone();
        t.signature = hex::encode([0u8; 64]);
        assert_eq!(t.verify(None, 0).unwrap_err(), LotError::Signature);
        let mut t = good.clone();
        t.path.pop();
        assert_eq!(t.verify(None, 0).unwrap_err(), LotError::Inclusion);
        // With a trust store, a proof without the signer's certificate is refused.
        let store = crate::pki::TrustStore::new();
        assert!(matches!(
            good.verify(Some(&store), 0),
            Err(LotError::Certificate(_))
        ));
        assert!(l.proof(9, None).is_err());
    }

    #[test]
    fn header_with_attachments_is_version_2_and_canonical() {
        let l = lot(2);
        let v1 = l.header.to_der().unwrap();
        // Without attachments: version 1 (02 01 01 right after the SEQUENCE header: 30 81 LL,
        // the header being over 127 bytes), ten fields.
        assert_eq!(v1[1], 0x81);
        assert_eq!(&v1[3..6], &[0x02, 0x01, 0x01]);
        let mut h = l.header.clone();
        h.attachments = vec![
            crate::attachment::tests::sample_ref(0),
            crate::attachment::tests::sample_ref(1),
        ];
        let v2 = h.to_der().unwrap();
        // A ref: 30 LL, number 02 01 NN, kind 02 01 01, "image/png" 0C 09 + 9, size 1234 =
        // 02 02 04 D2, sha256 04 20 + 32: 2 + 3 + 3 + 11 + 4 + 34 = 57 bytes; the list
        // 2 + 2 × 57 = 116; the header 133 + 116 = 249 < 256, still 30 81 LL.
        assert_eq!(v2[1], 0x81);
        assert_eq!(&v2[3..6], &[0x02, 0x01, 0x02]);
        assert_eq!(LotHeader::from_der(&v2).unwrap(), h);
        // The version 1 fields are the same bytes, then the list.
        let list = AttachmentRef::list_to_der(&h.attachments).unwrap();
        assert_eq!(v2.len(), v1.len() + list.len());
        assert_eq!(list.len(), 2 + 2 * 57);
        assert_eq!(&v2[v2.len() - list.len()..], &list[..]);
        // A lot with that header round-trips.
        let mut signed = l.clone();
        signed.header = h.clone();
        assert_eq!(
            SignedLot::from_der(&signed.to_der().unwrap()).unwrap(),
            signed
        );
        // Version 2 with an empty list, and version 1 with a list, are refused.
        let fields = &v1[3..];
        let mut empty = vec![0x02, 0x01, 0x02];
        empty.extend_from_slice(&fields[3..]);
        empty.extend_from_slice(&[0x30, 0x00]);
        assert!(LotHeader::from_der(&crate::der::sequence(&empty)).is_err());
        let mut v1_list = fields.to_vec();
        v1_list.extend_from_slice(&list);
        assert!(LotHeader::from_der(&crate::der::sequence(&v1_list)).is_err());
        // Version 2 without the list.
        let mut v2_bare = vec![0x02, 0x01, 0x02];
        v2_bare.extend_from_slice(&fields[3..]);
        assert!(LotHeader::from_der(&crate::der::sequence(&v2_bare)).is_err());
        // The signature covers the references: a changed hash breaks it.
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut s = signed.clone();
        s.header.signer_key = key.verifying_key().to_bytes();
        s.signature = key.sign(&s.header.to_der().unwrap()).to_bytes();
        assert_eq!(s.verify().unwrap().len(), 2);
        s.header.attachments[1].sha256[0] ^= 1;
        assert_eq!(s.verify().unwrap_err(), LotError::Signature);
    }

    #[test]
    fn tampering_is_detected() {
        let l = lot(3);
        let mut t = l.clone();
        let last = t.entries[1].sheet.len() - 1;
        t.entries[1].sheet[last] ^= 1;
        assert_eq!(t.verify().unwrap_err(), LotError::Root);
        let mut t = l.clone();
        t.entries.pop();
        assert!(matches!(t.verify().unwrap_err(), LotError::Count { .. }));
        let mut t = l.clone();
        t.header.destination = "011759999".into();
        assert_eq!(t.verify().unwrap_err(), LotError::Signature);
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
            let _ = SignedLot::from_der(&bytes).map(|l| l.verify());
            let _ = LotHeader::from_der(&bytes);
            let _ = CareSheet::from_der(&bytes);
            let _ = crate::ack::Arl::from_der(&bytes);
        }

        #[test]
        fn decoders_never_panic_on_mutated_sheets(pos in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
            let mut der = crate::fse::CareSheet::sample(42).to_der().unwrap();
            let pos = pos % der.len();
            der[pos] = byte;
            der.truncate(cut.max(1).min(der.len()));
            let _ = CareSheet::from_der(&der);
        }
    }
}
