//! The CPS's signature (PSO: COMPUTE DIGITAL SIGNATURE) and the check of a card's signature.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::apdu::{Command, INS_PSO};
use crate::channel::{expect_ok, CardChannel, CardError};

/// Has the CPS sign `message` (PSO: COMPUTE DIGITAL SIGNATURE, Ed25519).
pub fn cps_sign<C: CardChannel + ?Sized>(
    ch: &mut C,
    message: &[u8],
) -> Result<[u8; 64], CardError> {
    let cmd = Command::new(0x00, INS_PSO, 0x9E, 0x9A)
        .with_data(message)
        .with_le(256);
    let sig = expect_ok(ch, "PSO: COMPUTE DIGITAL SIGNATURE", &cmd)?;
    sig.try_into()
        .map_err(|_| CardError::Data("signature is not 64 bytes".into()))
}

/// Checks an Ed25519 signature made by a card.
pub fn verify_signature(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(message, &sig).is_ok()
}
