//! Reading the Vitale application: the card and its insurer, the beneficiaries and their
//! coverages, the proof-of-presence key, the AMC block and the certificate.

use super::read::{read_key, read_optional};
use super::{
    read_file, select_aid, Amc, Beneficiary, Coverage, CoverageKind, Organism, VitaleData,
    AID_VITALE, EF_VITALE_AMC, EF_VITALE_BENEFICIARIES, EF_VITALE_CERT, EF_VITALE_ID,
    EF_VITALE_KEY,
};
use crate::channel::{CardChannel, CardError};
use crate::tlv::Records;

/// Reads a Vitale card: identity, beneficiaries, public key.
pub fn read_vitale<C: CardChannel + ?Sized>(ch: &mut C) -> Result<VitaleData, CardError> {
    select_aid(ch, AID_VITALE)?;
    let raw = read_file(ch, EF_VITALE_ID)?;
    let r = Records::new(&raw)?;
    let serial = r.text(0x80)?;
    let organism = Organism {
        regime: r.text(0x81)?,
        caisse: r.text(0x82)?,
        centre: r.text(0x83)?,
    };
    let raw = read_file(ch, EF_VITALE_BENEFICIARIES)?;
    let list = Records::new(&raw)?;
    let mut beneficiaries = Vec::new();
    for tpl in list.all(0x65) {
        let b = Records::new(tpl)?;
        beneficiaries.push(Beneficiary {
            surname: b.text(0x80)?,
            given_name: b.text(0x81)?,
            birth_date: b.text(0x82)?,
            nir: b.text(0x83)?,
            rank: b.byte(0x84)?,
            rights_from: b.text(0x85)?,
            rights_until: b.text(0x86)?,
            coverages: b
                .all(0xA7)
                .map(|c| {
                    let c = Records::new(c)?;
                    Ok(Coverage {
                        kind: CoverageKind::from_code(c.byte(0x80)?)?,
                        from: c.text(0x81)?,
                        until: c.text(0x82)?,
                    })
                })
                .collect::<Result<_, CardError>>()?,
        });
    }
    let public_key = read_key(ch, EF_VITALE_KEY)?;
    let amc = match read_optional(ch, EF_VITALE_AMC)? {
        None => None,
        Some(raw) => {
            let r = Records::new(&raw)?;
            let flags = r.byte(0x82)?;
            Some(Amc {
                number: r.text(0x80)?,
                name: r.text(0x81)?,
                direct: flags & 1 != 0,
                tiers_payant: flags & 2 != 0,
                from: r.text(0x83)?,
                until: r.text(0x84)?,
            })
        }
    };
    let certificate = read_optional(ch, EF_VITALE_CERT)?;
    Ok(VitaleData {
        serial,
        organism,
        beneficiaries,
        public_key,
        amc,
        certificate,
    })
}
