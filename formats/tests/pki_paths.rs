//! Certificate paths the trust store refuses because webpki checks them: an intermediate CA's
//! `pathLenConstraint` exceeded, an unknown critical extension, a CA that may not sign
//! certificates, an expired root, a revoked intermediate, a CRL with a wrong signature. Each
//! refusal sits beside the same path made acceptable, so it is the one fault that is refused.
//!
//! The PKI is made here with rcgen and fixed Ed25519 keys (as `fse-sim pki` does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::Signer;
use fse_formats::pki::{CertStatus, TrustStore};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    CustomExtension, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyUsagePurpose, PublicKeyData,
    RevokedCertParams, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// 2027-01-15T08:00:00Z: inside every validity below.
const NOW: i64 = 1_800_000_000;
/// 2024-01-01T00:00:00Z (54 years of 365 days + 13 leap days since 1970 = 19 723 days × 86 400).
const START: i64 = 1_704_067_200;
/// 2030-01-01T00:00:00Z (START + 6 × 365 + 2 leap days (2024, 2028) = START + 2 192 days × 86 400).
const END: i64 = 1_893_456_000;

/// An Ed25519 key rcgen signs with, derived from one byte.
struct Key {
    key: ed25519_dalek::SigningKey,
    public: [u8; 32],
}

impl Key {
    fn new(seed: u8) -> Key {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let public = key.verifying_key().to_bytes();
        Key { key, public }
    }
}

impl PublicKeyData for Key {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl rcgen::SigningKey for Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

/// Fields common to every certificate here: a name, START..END, a serial, key identifiers.
fn params(cn: &str, serial: u8, key: &Key) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "fsed pki path tests");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.not_before = at(START);
    p.not_after = at(END);
    p.serial_number = Some(SerialNumber::from_slice(&[0x10, serial]));
    p.key_identifier_method =
        KeyIdMethod::PreSpecified(Sha256::digest(key.subject_public_key_info())[..20].to_vec());
    p.use_authority_key_identifier_extension = true;
    p
}

/// A CA's fields, with `path_len` as its basicConstraints pathLenConstraint.
fn ca(cn: &str, serial: u8, key: &Key, path_len: Option<u8>) -> CertificateParams {
    let mut p = params(cn, serial, key);
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

/// A card's fields (key 100).
fn card() -> (CertificateParams, Key) {
    let key = Key::new(100);
    let mut p = params("Card", 100, &key);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    (p, key)
}

fn root(path_len: Option<u8>) -> CertifiedIssuer<'static, Key> {
    let key = Key::new(1);
    CertifiedIssuer::self_signed(ca("Root", 1, &key, path_len), key).unwrap()
}

fn store(certs: &[&CertifiedIssuer<'_, Key>]) -> TrustStore {
    let mut s = TrustStore::new();
    for c in certs {
        s.add_certificates(c.der()).unwrap();
    }
    s
}

/// root → CA 1 (pathLenConstraint `first`) → CA 2 → card: CA 1 allows `first` CAs below it.
fn two_level_chain(first: u8) -> (TrustStore, Vec<u8>, [u8; 32]) {
    let root = root(None);
    let (k1, k2) = (Key::new(2), Key::new(3));
    let ca1 = CertifiedIssuer::signed_by(ca("CA 1", 2, &k1, Some(first)), k1, &root).unwrap();
    let ca2 = CertifiedIssuer::signed_by(ca("CA 2", 3, &k2, None), k2, &ca1).unwrap();
    let (p, key) = card();
    let cert = p.signed_by(&key, &ca2).unwrap().der().to_vec();
    (store(&[&root, &ca1, &ca2]), cert, key.public)
}

#[test]
fn pki_an_intermediate_path_length_constraint_exceeded_is_refused() {
    // CA 1 with pathLenConstraint 1: one CA (CA 2) below it, allowed.
    let (s, cert, key) = two_level_chain(1);
    let c = s.check(&cert, &key, NOW);
    assert_eq!(c.status, CertStatus::Valid, "{c:?}");
    // pathLenConstraint 0: CA 2 below CA 1 is one CA too many.
    let (s, cert, key) = two_level_chain(0);
    let c = s.check(&cert, &key, NOW);
    assert_eq!(c.status, CertStatus::Untrusted, "{c:?}");
    let reason = c.reason.unwrap();
    assert!(reason.contains("path length constraint"), "{reason}");
    assert!(reason.contains("CN=Card"), "{reason}");
}

/// root → card, the card carrying the extension 1.3.6.1.4.1.55555.1 (NULL), critical or not.
fn card_with_extension(critical: bool) -> (TrustStore, Vec<u8>, [u8; 32]) {
    let root = root(None);
    let (mut p, key) = card();
    let mut ext = CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], vec![0x05, 0]);
    ext.set_criticality(critical);
    p.custom_extensions.push(ext);
    let cert = p.signed_by(&key, &root).unwrap().der().to_vec();
    (store(&[&root]), cert, key.public)
}

#[test]
fn pki_an_unknown_critical_extension_is_refused() {
    let (s, cert, key) = card_with_extension(false);
    let c = s.check(&cert, &key, NOW);
    assert_eq!(c.status, CertStatus::Valid, "{c:?}");
    let (s, cert, key) = card_with_extension(true);
    let c = s.check(&cert, &key, NOW);
    assert_eq!(c.status, CertStatus::Untrusted, "{c:?}");
    let reason = c.reason.unwrap();
    assert!(reason.contains("unknown critical extension"), "{reason}");
}

#[test]
fn pki_a_ca_that_may_not_sign_certificates_is_no_issuer() {
    let root = root(None);
    let k1 = Key::new(2);
    let mut p1 = ca("CA 1", 2, &k1, None);
    // basicConstraints cA, but keyUsage without keyCertSign.
    p1.key_usages = vec![KeyUsagePurpose::CrlSign];
    let ca1 = CertifiedIssuer::signed_by(p1, k1, &root).unwrap();
    let (p, key) = card();
    let cert = p.signed_by(&key, &ca1).unwrap().der().to_vec();
    let c = store(&[&root, &ca1]).check(&cert, &key.public, NOW);
    assert_eq!(c.status, CertStatus::Untrusted, "{c:?}");
    assert!(c.reason.unwrap().starts_with("no trusted CA"));
}

#[test]
fn pki_dates_of_the_root_and_of_the_card_are_checked() {
    let root_key = Key::new(1);
    let mut rp = ca("Root", 1, &root_key, None);
    // The root ends one second before NOW; the card is valid START..END.
    rp.not_after = at(NOW - 1);
    let root = CertifiedIssuer::self_signed(rp, root_key).unwrap();
    let (p, key) = card();
    let cert = p.signed_by(&key, &root).unwrap().der().to_vec();
    let s = store(&[&root]);
    let c = s.check(&cert, &key.public, NOW);
    assert_eq!(c.status, CertStatus::Expired, "{c:?}");
    // NOW - 1 = 1 799 999 999 = 2027-01-15T07:59:59Z, and the reason names the root.
    assert_eq!(
        c.reason.as_deref(),
        Some("certificate O=fsed pki path tests, CN=Root expired on 2027-01-15T07:59:59Z")
    );
    // Before the card's START (and the root's): not yet valid, the card named.
    let c = s.check(&cert, &key.public, START - 1);
    assert_eq!(c.status, CertStatus::NotYetValid, "{c:?}");
    assert!(c
        .reason
        .unwrap()
        .contains("CN=Card not valid before 2024-01-01T00:00:00Z"));
}

/// root → CA 1 → card, and a CRL of `crl_key` named as the root listing CA 1's serial.
fn revoked_intermediate(crl_key: Key) -> (TrustStore, Vec<u8>, [u8; 32]) {
    let root = root(None);
    let k1 = Key::new(2);
    let ca1 = CertifiedIssuer::signed_by(ca("CA 1", 2, &k1, None), k1, &root).unwrap();
    let (p, key) = card();
    let cert = p.signed_by(&key, &ca1).unwrap().der().to_vec();
    let mut s = store(&[&root, &ca1]);
    let crl = CertificateRevocationListParams {
        this_update: at(NOW - 3600),
        next_update: at(NOW + 3600),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from_slice(&[0x10, 2]),
            revocation_time: at(NOW - 3600),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::PreSpecified(vec![1; 20]),
    };
    let signer = CertifiedIssuer::self_signed(ca("Root", 1, &crl_key, None), crl_key).unwrap();
    s.add_crls(crl.signed_by(&signer).unwrap().der()).unwrap();
    (s, cert, key.public)
}

#[test]
fn pki_a_revoked_intermediate_revokes_its_cards_when_its_issuer_signed_the_list() {
    let (s, cert, key) = revoked_intermediate(Key::new(1));
    let c = s.check(&cert, &key, NOW);
    assert_eq!(c.status, CertStatus::Revoked, "{c:?}");
    assert!(c.revocation_checked);
    // Serial 10 02, CA 1's, on the root's list.
    let reason = c.reason.unwrap();
    assert!(reason.contains("CN=CA 1 (serial 1002)"), "{reason}");
    // The same list signed by another key under the root's name is refused, not ignored.
    let (s, cert, key) = revoked_intermediate(Key::new(9));
    let c = s.check(&cert, &key, NOW);
    assert_eq!(c.status, CertStatus::Untrusted, "{c:?}");
    assert!(c.reason.unwrap().contains("wrong signature"));
}
