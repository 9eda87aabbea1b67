//! The two card applications — CPS (the professional's card) and carte Vitale
//! (the patient's) — their files, their TLV layouts and the card exchanges
//! written against [`CardChannel`](crate::channel::CardChannel), one file per
//! card operation. `formats/CARDS.md` documents the same.
//!
//! The simulator encodes these files with the `encode_*` functions; the daemon
//! reads them with the `read_*` exchanges: both sides share this module.

mod authenticate;
mod cps;
mod encode;
mod model;
mod read;
mod select;
mod sign;
mod verify_pin;
mod vitale;

pub use authenticate::{vitale_authenticate, vitale_authenticate_selected};
pub use cps::read_cps;
pub use encode::{
    encode_amc, encode_beneficiaries, encode_cps_holder, encode_key, encode_situation,
    encode_vitale_id,
};
pub use model::{
    Amc, Beneficiary, CardKind, CardType, Coverage, CoverageKind, CpsData, CpsHolder, ExerciseMode,
    Organism, Situation, VitaleData,
};
pub use read::{read_current_file, read_file};
pub use select::{identify, select_aid, select_file};
pub use sign::{cps_sign, verify_signature};
pub use verify_pin::{
    change_pin, pin_tries_left, reset_pin_status, unblock_pin, verify_pin, Pin, Puk,
};
pub use vitale::read_vitale;

/// AID of the CPS application (the public CPS3 IAS-ECC AID).
pub const AID_CPS: &[u8] = &[
    0xE8, 0x28, 0xBD, 0x08, 0x0F, 0x80, 0x25, 0x00, 0x00, 0x01, 0xFF, 0x00, 0x10,
];
/// AID of the Vitale application ("VITALE").
pub const AID_VITALE: &[u8] = &[
    0xD2, 0x50, 0x00, 0x00, 0x02, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45,
];

/// CPS file: holder identity.
pub const EF_CPS_HOLDER: u16 = 0xD100;
/// CPS file: signature public key.
pub const EF_CPS_KEY: u16 = 0xD101;
/// CPS file: the card's X.509 certificate (DER, Ed25519 per RFC 8410), issued by the CPS CA.
pub const EF_CPS_CERT: u16 = 0xD102;
/// CPS files: situations d'exercice, `D120` + index (0..=15).
pub const EF_CPS_SITUATION_BASE: u16 = 0xD120;
/// Vitale file: card and insurer identity.
pub const EF_VITALE_ID: u16 = 0x0101;
/// Vitale file: beneficiaries.
pub const EF_VITALE_BENEFICIARIES: u16 = 0x0102;
/// Vitale file: proof-of-presence public key.
pub const EF_VITALE_KEY: u16 = 0x0103;
/// Vitale file: the supplementary insurer (AMC) block; absent when the patient has none.
pub const EF_VITALE_AMC: u16 = 0x0104;
/// Vitale file: the card's X.509 certificate (DER, Ed25519), issued by the Vitale CA.
pub const EF_VITALE_CERT: u16 = 0x0105;

/// PIN reference of the CPS holder PIN (P2 of VERIFY).
pub const PIN_REF: u8 = 0x81;
/// Longest situation list a CPS holds.
pub const MAX_SITUATIONS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::CardChannel;

    /// A card that answers whatever the test says, then `6A82`.
    struct Scripted(std::collections::VecDeque<Vec<u8>>);

    impl CardChannel for Scripted {
        fn transmit(&mut self, _command: &[u8]) -> Result<Vec<u8>, crate::channel::ChannelError> {
            Ok(self.0.pop_front().unwrap_or_else(|| vec![0x6A, 0x82]))
        }
    }

    proptest::proptest! {
        #[test]
        fn card_readers_never_panic_on_arbitrary_answers(
            answers in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..40)
        ) {
            let _ = read_cps(&mut Scripted(answers.clone().into()));
            let _ = read_vitale(&mut Scripted(answers.clone().into()));
            let _ = identify(&mut Scripted(answers.clone().into()));
            let _ = pin_tries_left(&mut Scripted(answers.clone().into()));
            let _ = cps_sign(&mut Scripted(answers.clone().into()), b"m");
            let _ = vitale_authenticate(&mut Scripted(answers.into()), &[0; 32]);
        }

        #[test]
        fn card_readers_never_panic_on_well_framed_arbitrary_files(
            files in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..200), 1..12)
        ) {
            // Every SELECT succeeds and every READ BINARY returns one of the files: the TLV layer sees garbage.
            let mut answers = std::collections::VecDeque::new();
            for f in &files {
                answers.push_back(vec![0x90, 0x00]);
                answers.push_back(vec![0x90, 0x00]);
                let mut r = f.clone();
                r.extend_from_slice(&[0x90, 0x00]);
                answers.push_back(r);
            }
            let _ = read_cps(&mut Scripted(answers.clone()));
            let _ = read_vitale(&mut Scripted(answers));
        }
    }
}
