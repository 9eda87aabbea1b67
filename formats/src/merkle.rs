//! Merkle trees over a lot's sheets, hashed per RFC 9162 §2.1 (SHA-256, leaf
//! prefix `00`, node prefix `01`, split at the largest power of two below n),
//! with one random salt per leaf so that a proof reveals nothing about the
//! neighbouring sheets.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The leaf hash of one sheet: SHA-256(`00` ‖ salt ‖ sheet DER).
pub fn leaf_hash(salt: &[u8], sheet_der: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(salt);
    h.update(sheet_der);
    h.finalize().into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

fn split(n: usize) -> usize {
    // Largest power of two strictly below n (n ≥ 2).
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The Merkle tree hash of a list of leaf hashes (the empty tree hashes the empty string).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => Sha256::digest([]).into(),
        [one] => *one,
        _ => {
            let k = split(leaves.len());
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The audit path of leaf `index` (RFC 9162 §2.1.3.1), bottom-up; `None` when out of range.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    fn walk(leaves: &[Hash], m: usize, path: &mut Vec<Hash>) {
        if leaves.len() <= 1 {
            return;
        }
        let k = split(leaves.len());
        if m < k {
            walk(&leaves[..k], m, path);
            path.push(root(&leaves[k..]));
        } else {
            walk(&leaves[k..], m - k, path);
            path.push(root(&leaves[..k]));
        }
    }
    walk(leaves, index, &mut path);
    Some(path)
}

/// Verifies an audit path (RFC 9162 §2.1.3.2) for leaf `index` of a tree of `size` leaves.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    expected_root: &Hash,
) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && &r == expected_root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&[i as u8; 16], format!("sheet {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn every_leaf_of_every_size_verifies_and_tampering_fails() {
        for n in 1..=33 {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = inclusion_proof(&l, i).unwrap();
                assert!(
                    verify_inclusion(&l[i], i as u64, n as u64, &p, &r),
                    "n={n} i={i}"
                );
                let other = leaf_hash(&[0xEE; 16], b"forged");
                assert!(!verify_inclusion(&other, i as u64, n as u64, &p, &r));
                if n > 1 {
                    assert!(!verify_inclusion(
                        &l[i],
                        ((i + 1) % n) as u64,
                        n as u64,
                        &p,
                        &r
                    ));
                }
            }
            assert!(inclusion_proof(&l, n).is_none());
        }
    }

    #[test]
    fn root_of_two_is_node_of_leaves() {
        let l = leaves(2);
        assert_eq!(root(&l), node_hash(&l[0], &l[1]));
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
