//! The DRE lot: what goes to a supplementary insurer (AMC) that pays the
//! practitioner directly. For one signed lot and one AMC, it carries the DREs
//! of that AMC's sheets, each with the proof that its sheet is in the lot the
//! CPS signed: the lot header as signed, the CPS signature, and per DRE its
//! sheet, salt and RFC 9162 audit path. The CPS signs once per lot; the AMC
//! checks the same signature as the AMO does, without the other patients'
//! sheets. Per `formats/asn1/fsed.asn` (`DreLot`).

use asn1_rs::{DerSequence, FromDer, OctetString, Tagged, ToDer, ToDerSequence};

use crate::der::{bytes_n, DerError};
use crate::dre::Dre;
use crate::fse::CareSheet;
use crate::lot::{leaves, LotError, LotHeader, SignedLot, SALT_LEN};
use crate::merkle::{self, Hash};

/// Version of the `DreLot` encoding.
pub const DRE_LOT_VERSION: u32 = 1;

/// One DRE with the proof of its sheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DreLotEntry {
    /// The DRE (DER).
    pub dre: Vec<u8>,
    /// Its sheet's leaf index in the lot.
    pub index: u64,
    /// The sheet's salt.
    pub salt: [u8; SALT_LEN],
    /// The audit path from the sheet's leaf to the signed root.
    pub path: Vec<Hash>,
    /// The sheet (DER), which the DRE is derived from.
    pub sheet: Vec<u8>,
}

/// The DREs of one lot for one AMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DreLot {
    /// The lot they came in.
    pub lot_id: String,
    /// The AMC's number (the routing key).
    pub amc: String,
    /// The lot header as the CPS signed it (DER).
    pub header: Vec<u8>,
    /// The CPS signature over `header`.
    pub signature: [u8; 64],
    /// The signer's certificate (DER), empty when the card holds none.
    pub signer_certificate: Vec<u8>,
    /// One entry per DRE.
    pub entries: Vec<DreLotEntry>,
}

#[derive(DerSequence, ToDerSequence)]
struct EntryDer<'a> {
    dre: OctetString<'a>,
    index: u64,
    salt: OctetString<'a>,
    path: Vec<OctetString<'a>>,
    sheet: OctetString<'a>,
}

#[derive(DerSequence, ToDerSequence)]
struct DreLotDer<'a> {
    version: u32,
    lot_id: String,
    amc: String,
    header: OctetString<'a>,
    signature: OctetString<'a>,
    signer_certificate: OctetString<'a>,
    entries: Vec<EntryDer<'a>>,
}

impl DreLot {
    /// The DRE lots of a signed lot, one per AMC paid directly (none when no sheet has a DRE),
    /// in the order of the AMC numbers.
    pub fn from_signed(lot: &SignedLot) -> Result<Vec<DreLot>, LotError> {
        let mut dres = Vec::with_capacity(lot.entries.len());
        for (i, entry) in lot.entries.iter().enumerate() {
            let sheet = CareSheet::from_der(&entry.sheet).map_err(|e| LotError::Sheet {
                index: i,
                reason: e.to_string(),
            })?;
            dres.push(Dre::from_sheet(&sheet)?);
        }
        Self::grouped(lot, dres)
    }

    /// [`DreLot::from_signed`] with each entry's DRE already made — by [`Dre::from_sheet`]
    /// when its sheet was, and kept beside it: `dres[i]` is the DER of entry `i`'s DRE, or
    /// `None`. Only those DREs are decoded (for their AMC), not every sheet of the lot.
    pub fn from_signed_with_dres(
        lot: &SignedLot,
        dres: &[Option<Vec<u8>>],
    ) -> Result<Vec<DreLot>, LotError> {
        if dres.len() != lot.entries.len() {
            return Err(LotError::Count {
                announced: lot.entries.len() as u64,
                held: dres.len() as u64,
            });
        }
        let mut decoded = Vec::with_capacity(dres.len());
        for (i, dre) in dres.iter().enumerate() {
            decoded.push(match dre {
                Some(der) => Some(Dre::from_der(der).map_err(|e| LotError::Sheet {
                    index: i,
                    reason: format!("its DRE: {e}"),
                })?),
                None => None,
            });
        }
        Self::grouped(lot, decoded)
    }

    /// One DRE lot per AMC from each entry's DRE (`dres[i]` for entry `i`).
    fn grouped(lot: &SignedLot, dres: Vec<Option<Dre>>) -> Result<Vec<DreLot>, LotError> {
        let header = lot.header.to_der()?;
        let all = leaves(&lot.entries);
        let mut by_amc: std::collections::BTreeMap<String, Vec<DreLotEntry>> = Default::default();
        for (i, (entry, dre)) in lot.entries.iter().zip(dres).enumerate() {
            let Some(dre) = dre else {
                continue;
            };
            let path = merkle::inclusion_proof(&all, i).ok_or(LotError::Sheet {
                index: i,
                reason: "no such leaf".into(),
            })?;
            by_amc
                .entry(dre.amc_number.clone())
                .or_default()
                .push(DreLotEntry {
                    dre: dre.to_der()?,
                    index: i as u64,
                    salt: entry.salt,
                    path,
                    sheet: entry.sheet.clone(),
                });
        }
        Ok(by_amc
            .into_iter()
            .map(|(amc, entries)| DreLot {
                lot_id: lot.header.lot_id.clone(),
                amc,
                header: header.clone(),
                signature: lot.signature,
                signer_certificate: lot.signer_certificate.clone().unwrap_or_default(),
                entries,
            })
            .collect())
    }

    /// DER per `DreLot` in `fsed.asn`.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        let der = DreLotDer {
            version: DRE_LOT_VERSION,
            lot_id: self.lot_id.clone(),
            amc: self.amc.clone(),
            header: OctetString::new(&self.header),
            signature: OctetString::new(&self.signature),
            signer_certificate: OctetString::new(&self.signer_certificate),
            entries: self
                .entries
                .iter()
                .map(|e| EntryDer {
                    dre: OctetString::new(&e.dre),
                    index: e.index,
                    salt: OctetString::new(&e.salt),
                    path: e.path.iter().map(|h| OctetString::new(h)).collect(),
                    sheet: OctetString::new(&e.sheet),
                })
                .collect(),
        };
        Ok(der.to_der_vec()?)
    }

    /// Strict DER decoding (no verification: see [`DreLot::verify`]).
    pub fn from_der(bytes: &[u8]) -> Result<DreLot, DerError> {
        crate::der::check_structure(bytes)?;
        let (rest, d) = DreLotDer::from_der(bytes)?;
        if !rest.is_empty() {
            return Err(DerError::field("dre_lot", "trailing bytes"));
        }
        if d.version != DRE_LOT_VERSION {
            return Err(DerError::field("version", "unsupported DRE lot version"));
        }
        let entries = d
            .entries
            .into_iter()
            .map(|e| {
                Ok(DreLotEntry {
                    dre: e.dre.as_ref().to_vec(),
                    index: e.index,
                    salt: bytes_n(e.salt.as_ref(), "entries.salt")?,
                    path: e
                        .path
                        .iter()
                        .map(|h| bytes_n(h.as_ref(), "entries.path"))
                        .collect::<Result<_, DerError>>()?,
                    sheet: e.sheet.as_ref().to_vec(),
                })
            })
            .collect::<Result<Vec<_>, DerError>>()?;
        let lot = DreLot {
            lot_id: d.lot_id,
            amc: d.amc,
            header: d.header.as_ref().to_vec(),
            signature: bytes_n(d.signature.as_ref(), "signature")?,
            signer_certificate: d.signer_certificate.as_ref().to_vec(),
            entries,
        };
        crate::der::require_canonical(bytes, &lot.to_der()?, "dre_lot")?;
        Ok(lot)
    }

    /// What the AMC checks: the header names this lot and is signed by its signer key (and,
    /// given a trust store, the signer's certificate is valid at `now`, Unix seconds); each
    /// sheet's leaf leads up its audit path to the signed root, the sheet decodes with its
    /// proof of presence, and its DRE is exactly the one derived from it, for this AMC.
    /// Returns the DREs.
    pub fn verify(
        &self,
        trust: Option<&crate::pki::TrustStore>,
        now: i64,
    ) -> Result<Vec<Dre>, LotError> {
        let header = LotHeader::from_der(&self.header)?;
        if header.lot_id != self.lot_id {
            return Err(LotError::Der(DerError::field(
                "header",
                "names another lot",
            )));
        }
        if !crate::cards::verify_signature(&header.signer_key, &self.header, &self.signature) {
            return Err(LotError::Signature);
        }
        if let Some(trust) = trust {
            if self.signer_certificate.is_empty() {
                return Err(LotError::Certificate("absent".into()));
            }
            let check = trust.check(&self.signer_certificate, &header.signer_key, now);
            if let Some(why) = check.refusal() {
                return Err(LotError::Certificate(why));
            }
        }
        let mut dres = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let index = usize::try_from(e.index).unwrap_or(usize::MAX);
            let leaf = merkle::leaf_hash(&e.salt, &e.sheet);
            if !merkle::verify_inclusion(
                &leaf,
                e.index,
                header.sheet_count,
                &e.path,
                &header.merkle_root,
            ) {
                return Err(LotError::Inclusion);
            }
            let sheet = CareSheet::from_der(&e.sheet)?;
            sheet.verify_presence().map_err(|err| LotError::Sheet {
                index,
                reason: err.to_string(),
            })?;
            let dre = Dre::from_der(&e.dre)?;
            if Dre::from_sheet(&sheet)?.as_ref() != Some(&dre) || dre.amc_number != self.amc {
                return Err(LotError::Sheet {
                    index,
                    reason: "the DRE is not the one its sheet gives for this AMC".into(),
                });
            }
            dres.push(dre);
        }
        Ok(dres)
    }
}
