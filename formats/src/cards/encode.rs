//! The card files' TLV layouts, written: the simulator encodes its cards' files with these,
//! the exchanges of this module read them back.

use super::{Amc, Beneficiary, CpsHolder, ExerciseMode, Situation, VitaleData};
use crate::tlv;

/// Encodes the CPS holder file.
pub fn encode_cps_holder(h: &CpsHolder) -> Vec<u8> {
    let mut out = Vec::new();
    tlv::push(&mut out, 0x80, &[h.card_type.code()]);
    tlv::push(&mut out, 0x81, h.serial.as_bytes());
    tlv::push(&mut out, 0x82, h.national_id.as_bytes());
    tlv::push(&mut out, 0x83, h.surname.as_bytes());
    tlv::push(&mut out, 0x84, h.given_name.as_bytes());
    tlv::push(&mut out, 0x85, h.profession.as_bytes());
    tlv::push(&mut out, 0x86, h.specialty.as_bytes());
    tlv::push(&mut out, 0x87, h.valid_until.as_bytes());
    out
}

/// Encodes one situation file.
pub fn encode_situation(s: &Situation) -> Vec<u8> {
    let mut out = Vec::new();
    tlv::push(&mut out, 0x80, &[s.index]);
    tlv::push(&mut out, 0x81, s.billing_number.as_bytes());
    tlv::push(&mut out, 0x82, s.place.as_bytes());
    tlv::push(&mut out, 0x83, &[s.sector]);
    tlv::push(
        &mut out,
        0x84,
        &[u8::from(s.may_sign_invoice) | (u8::from(s.may_sign_lot) << 1)],
    );
    if s.mode != ExerciseMode::Liberal {
        tlv::push(&mut out, 0x85, &[s.mode.code()]);
    }
    out
}

/// Encodes a public-key file.
pub fn encode_key(public_key: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::new();
    tlv::push(&mut out, 0x80, public_key);
    out
}

/// Encodes the Vitale identity file.
pub fn encode_vitale_id(v: &VitaleData) -> Vec<u8> {
    let mut out = Vec::new();
    tlv::push(&mut out, 0x80, v.serial.as_bytes());
    tlv::push(&mut out, 0x81, v.organism.regime.as_bytes());
    tlv::push(&mut out, 0x82, v.organism.caisse.as_bytes());
    tlv::push(&mut out, 0x83, v.organism.centre.as_bytes());
    out
}

/// Encodes the Vitale beneficiaries file: one template `65` per beneficiary.
pub fn encode_beneficiaries(list: &[Beneficiary]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in list {
        let mut inner = Vec::new();
        tlv::push(&mut inner, 0x80, b.surname.as_bytes());
        tlv::push(&mut inner, 0x81, b.given_name.as_bytes());
        tlv::push(&mut inner, 0x82, b.birth_date.as_bytes());
        tlv::push(&mut inner, 0x83, b.nir.as_bytes());
        tlv::push(&mut inner, 0x84, &[b.rank]);
        tlv::push(&mut inner, 0x85, b.rights_from.as_bytes());
        tlv::push(&mut inner, 0x86, b.rights_until.as_bytes());
        for c in &b.coverages {
            let mut cov = Vec::new();
            tlv::push(&mut cov, 0x80, &[c.kind.code()]);
            tlv::push(&mut cov, 0x81, c.from.as_bytes());
            tlv::push(&mut cov, 0x82, c.until.as_bytes());
            tlv::push(&mut inner, 0xA7, &cov);
        }
        tlv::push(&mut out, 0x65, &inner);
    }
    out
}

/// Encodes the Vitale AMC file.
pub fn encode_amc(a: &Amc) -> Vec<u8> {
    let mut out = Vec::new();
    tlv::push(&mut out, 0x80, a.number.as_bytes());
    tlv::push(&mut out, 0x81, a.name.as_bytes());
    tlv::push(
        &mut out,
        0x82,
        &[u8::from(a.direct) | (u8::from(a.tiers_payant) << 1)],
    );
    tlv::push(&mut out, 0x83, a.from.as_bytes());
    tlv::push(&mut out, 0x84, a.until.as_bytes());
    out
}
