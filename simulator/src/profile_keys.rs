//! What the card profiles and the test PKI both need, and neither owns: the test key
//! derived from a card's serial, and the error of a card profile that cannot be used. A
//! leaf: it depends on neither, so the PKI can certify the profiles' cards while the
//! profiles make their cards with certificates from the PKI.

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

/// A profile that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Neither a built-in name nor a readable file.
    #[error("profile {0}: not a built-in profile ({1}) nor a readable file")]
    Unknown(String, String),
    /// The TOML does not parse or misses a field (the message names it).
    #[error("profile {name}: {message}")]
    Invalid {
        /// Profile.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// The test key of a card, derived from its serial.
pub fn test_key(serial: &str) -> SigningKey {
    SigningKey::from_bytes(&Sha256::digest(format!("fsed-sim:{serial}")).into())
}

/// The serial of the Vitale app of beneficiary `index` (0 = the assuré) of the Vitale card
/// `card_serial`: each beneficiary has an app of their own.
pub fn app_serial(card_serial: &str, index: usize) -> String {
    format!("APP-{card_serial}-{index}")
}

/// The test key of the Vitale app `app_serial`, derived from it as a card's from its serial.
pub fn app_key(app_serial: &str) -> SigningKey {
    SigningKey::from_bytes(&Sha256::digest(format!("fsed-sim-app:{app_serial}")).into())
}
