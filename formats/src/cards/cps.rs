//! Reading the CPS application: the holder, his situations d'exercice, the signature key and
//! the certificate.

use super::read::{read_key, read_optional};
use super::{
    read_file, select_aid, CardType, CpsData, CpsHolder, ExerciseMode, Situation, AID_CPS,
    EF_CPS_CERT, EF_CPS_HOLDER, EF_CPS_KEY, EF_CPS_SITUATION_BASE, MAX_SITUATIONS,
};
use crate::channel::{CardChannel, CardError};
use crate::tlv::Records;

/// Reads a CPS: holder, situations, public key.
pub fn read_cps<C: CardChannel + ?Sized>(ch: &mut C) -> Result<CpsData, CardError> {
    select_aid(ch, AID_CPS)?;
    let raw = read_file(ch, EF_CPS_HOLDER)?;
    let r = Records::new(&raw)?;
    let holder = CpsHolder {
        card_type: CardType::from_code(r.byte(0x80)?)?,
        serial: r.text(0x81)?,
        national_id: r.text(0x82)?,
        surname: r.text(0x83)?,
        given_name: r.text(0x84)?,
        profession: r.text(0x85)?,
        specialty: r.text(0x86)?,
        valid_until: r.text(0x87)?,
    };
    let mut situations = Vec::new();
    for i in 0..MAX_SITUATIONS as u16 {
        let raw = match read_file(ch, EF_CPS_SITUATION_BASE + i) {
            Ok(raw) => raw,
            Err(CardError::FileNotFound(_)) => break,
            Err(e) => return Err(e),
        };
        let r = Records::new(&raw)?;
        let flags = r.byte(0x84)?;
        situations.push(Situation {
            index: r.byte(0x80)?,
            billing_number: r.text(0x81)?,
            place: r.text(0x82)?,
            sector: r.byte(0x83)?,
            may_sign_invoice: flags & 1 != 0,
            may_sign_lot: flags & 2 != 0,
            mode: match r.get(0x85) {
                None => ExerciseMode::Liberal,
                Some([code]) => ExerciseMode::from_code(*code).ok_or_else(|| {
                    CardError::Data(format!("situation: unknown mode d'exercice {code}"))
                })?,
                Some(_) => {
                    return Err(CardError::Data(
                        "situation: mode d'exercice is one byte".into(),
                    ))
                }
            },
        });
    }
    let public_key = read_key(ch, EF_CPS_KEY)?;
    let certificate = read_optional(ch, EF_CPS_CERT)?;
    Ok(CpsData {
        holder,
        situations,
        public_key,
        certificate,
    })
}
