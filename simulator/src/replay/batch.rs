//! Ed25519 batch verification: many signatures checked with one multi-scalar multiplication.
//!
//! For signatures `(Aᵢ, Mᵢ, Rᵢ ‖ sᵢ)` and random 128-bit weights `zᵢ`, the batch holds when
//! `[8]·([−Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σ [zᵢkᵢ]Aᵢ)` is the identity, `kᵢ = SHA-512(Rᵢ ‖ Aᵢ ‖ Mᵢ) mod ℓ`.
//! The weights come from the thread's CSPRNG (seeded by the OS), so a signer cannot choose
//! signatures that cancel each other: a batch holding a signature its key's holder did not
//! make passes with probability about 2⁻¹²⁸.
//!
//! Soundness against `verify_strict` (what [`fse_formats::cards::verify_signature`] and the
//! insurer's single checks use): the same inputs are refused up front — a key or `R` that
//! does not decompress or is of small order, an `s` that is not canonical. What remains
//! different is the cofactor: a signature whose `R` carries a small-order component added by
//! the key's own holder passes here and fails `verify_strict`. Nobody without the private key
//! can make one, so the batch never accepts a forgery; a caller that must name the exact
//! culprit of a failed batch checks the items one by one ([`verify_one`]).

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use rand::RngCore;
use sha2::{Digest, Sha512};

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

/// The decoded parts of one item, or `None` when `verify_strict` would refuse it outright.
fn parts(item: &Item<'_>) -> Option<(EdwardsPoint, EdwardsPoint, Scalar, Scalar)> {
    let a = CompressedEdwardsY(*item.key).decompress()?;
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&item.signature[..32]);
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    if a.is_small_order() || r.is_small_order() {
        return None;
    }
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&item.signature[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(item.key);
    h.update(item.message);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    Some((a, r, s, k))
}

/// Whether every signature of `items` verifies (an empty batch does). `false` says only that
/// at least one does not: [`verify_one`] names it.
pub fn verify_batch(items: &[Item<'_>]) -> bool {
    if items.is_empty() {
        return true;
    }
    let mut rng = rand::thread_rng();
    let mut b_coefficient = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(2 * items.len() + 1);
    let mut points = Vec::with_capacity(2 * items.len() + 1);
    scalars.push(Scalar::ZERO);
    points.push(ED25519_BASEPOINT_POINT);
    for item in items {
        let Some((a, r, s, k)) = parts(item) else {
            return false;
        };
        let mut z = [0u8; 32];
        rng.fill_bytes(&mut z[..16]);
        let z = Scalar::from_bytes_mod_order(z);
        b_coefficient -= z * s;
        scalars.push(z);
        points.push(r);
        scalars.push(z * k);
        points.push(a);
    }
    scalars[0] = b_coefficient;
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity()
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
