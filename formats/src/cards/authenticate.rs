//! The Vitale card's proof of presence: INTERNAL AUTHENTICATE over a 32-byte challenge.

use super::{select_aid, AID_VITALE};
use crate::apdu::{Command, INS_INTERNAL_AUTHENTICATE};
use crate::channel::{expect_ok, CardChannel, CardError};

/// Has the Vitale card sign a 32-byte challenge (INTERNAL AUTHENTICATE): the proof of presence.
pub fn vitale_authenticate<C: CardChannel + ?Sized>(
    ch: &mut C,
    challenge: &[u8; 32],
) -> Result<[u8; 64], CardError> {
    select_aid(ch, AID_VITALE)?;
    vitale_authenticate_selected(ch, challenge)
}

/// INTERNAL AUTHENTICATE alone, for a caller that knows the Vitale application is still
/// selected since its last exchange with this card (one APDU instead of two). A card
/// reset or another selection in between makes the card refuse it with a status word.
pub fn vitale_authenticate_selected<C: CardChannel + ?Sized>(
    ch: &mut C,
    challenge: &[u8; 32],
) -> Result<[u8; 64], CardError> {
    let cmd = Command::new(0x00, INS_INTERNAL_AUTHENTICATE, 0x00, 0x00)
        .with_data(challenge.as_slice())
        .with_le(256);
    let sig = expect_ok(ch, "INTERNAL AUTHENTICATE", &cmd)?;
    sig.try_into()
        .map_err(|_| CardError::Data("authentication answer is not 64 bytes".into()))
}
