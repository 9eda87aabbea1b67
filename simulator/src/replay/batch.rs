//! Ed25519 batch verification: many signatures checked with one multi-scalar multiplication,
//! by ed25519-dalek's own `verify_batch` (random weights from a transcript of the batch and the
//! thread's CSPRNG, so a signer cannot choose signatures that cancel each other).
//!
//! Soundness against `verify_strict` (what [`fse_formats::cards::verify_signature`] and the
//! insurer's single checks use): a key that does not decompress or is weak (of small order)
//! is refused up front, as `verify_strict` refuses it, and ed25519-dalek refuses a
//! non-canonical `s`. What remains different is a signature whose `R` carries a small-order
//! component added by the key's own holder: the batch may pass it and `verify_strict` fails it.
//! Nobody without the private key can make one, so the batch never accepts a forgery; a caller
//! that must name the exact culprit of a failed batch checks the items one by one
//! ([`verify_one`]).

use ed25519_dalek::{Signature, VerifyingKey};

/// One signature to check: the signer's public key, the signed message, the signature.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// Ed25519 public key (compressed point).
    pub key: &'a [u8; 32],
    /// The signed bytes.
    pub message: &'a [u8],
    /// `R ‖ s`.
    pub signature: &'a [u8; 64],
}

/// Whether every signature of `items` verifies (an empty batch does). `false` says only that
/// at least one does not: [`verify_one`] names it.
pub fn verify_batch(items: &[Item<'_>]) -> bool {
    if items.is_empty() {
        return true;
    }
    let mut keys = Vec::with_capacity(items.len());
    for item in items {
        match VerifyingKey::from_bytes(item.key) {
            Ok(key) if !key.is_weak() => keys.push(key),
            _ => return false,
        }
    }
    let messages: Vec<&[u8]> = items.iter().map(|i| i.message).collect();
    let signatures: Vec<Signature> = items
        .iter()
        .map(|i| Signature::from_bytes(i.signature))
        .collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

/// One signature alone, exactly as the single checks do (`verify_strict`).
pub fn verify_one(item: &Item<'_>) -> bool {
    fse_formats::cards::verify_signature(item.key, item.message, item.signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn signed(n: usize) -> Vec<([u8; 32], Vec<u8>, [u8; 64])> {
        (0..n)
            .map(|i| {
                let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
                let message = format!("message {i}").into_bytes();
                let sig = key.sign(&message).to_bytes();
                (key.verifying_key().to_bytes(), message, sig)
            })
            .collect()
    }

    fn items(v: &[([u8; 32], Vec<u8>, [u8; 64])]) -> Vec<Item<'_>> {
        v.iter()
            .map(|(key, message, signature)| Item {
                key,
                message,
                signature,
            })
            .collect()
    }

    #[test]
    fn good_batches_pass_and_one_bad_signature_fails_the_batch() {
        let mut v = signed(40);
        assert!(verify_batch(&items(&v)));
        assert!(verify_batch(&items(&v[..1])));
        assert!(verify_batch(&[]));
        // A message changed after signing.
        v[17].1[0] ^= 1;
        assert!(!verify_batch(&items(&v)));
        assert!(!verify_one(&items(&v)[17]));
        assert!(verify_one(&items(&v)[16]));
        v[17].1[0] ^= 1;
        // Two signatures swapped between messages: each alone is wrong.
        let s = v[3].2;
        v[3].2 = v[4].2;
        v[4].2 = s;
        assert!(!verify_batch(&items(&v)));
    }

    #[test]
    fn what_verify_strict_refuses_outright_the_batch_refuses() {
        let mut v = signed(3);
        // s not canonical: 2²⁵⁶ − 1 ≥ ℓ.
        let mut non_canonical = v.clone();
        non_canonical[1].2[32..].copy_from_slice(&[0xFF; 32]);
        assert!(!verify_batch(&items(&non_canonical)));
        // A small-order key (the identity, y = 1) with any signature.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        v[2].0 = identity;
        assert!(!verify_batch(&items(&v)));
        assert!(!verify_one(&items(&v)[2]));
        // Another key than the signer's (y = 2: a point or not, it is not the signer's).
        let mut not_point = [0u8; 32];
        not_point[0] = 2;
        v[2].0 = not_point;
        assert!(!verify_batch(&items(&v)));
    }
}
