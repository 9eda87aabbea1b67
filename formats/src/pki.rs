//! Certificate checks: the X.509 certificate of a card (Ed25519 keys and
//! signatures, RFC 8410), its chain up to a trusted root, and the revocation
//! lists (RFC 5280 CRLs: the CPS CA's lists revoked professional cards, the
//! Vitale CA's is the opposition list of lost or stolen Vitale cards).
//!
//! Pure functions of (certificates, CRLs, time): the daemon reads the files,
//! the simulator issues them (`fse-sim pki`). Only Ed25519 is accepted.
//!
//! Path building and checking is rustls-webpki's (lib `webpki`): signatures, validity dates,
//! basicConstraints and their path lengths, critical extensions, extended key usage, and the
//! CRLs of every CA in the path (a CA without a CRL here is not checked; a CRL's `nextUpdate` is
//! not enforced). x509-parser only reads what webpki does not expose: the subject, serial and
//! dates shown to users, the subject `serialNumber` of an insurer, keyUsage, and the certificate
//! a refusal names. Two checks webpki leaves to its caller are made on each path it proposes:
//! every CA in it, root included, must be a CA that may sign certificates (basicConstraints
//! `cA`, and keyUsage `keyCertSign` when it has a keyUsage), and the root must be within its
//! dates (webpki does not look at a trust anchor's).
//!
//! How webpki's refusals map onto [`CertStatus`] (the reason names the certificate concerned):
//!
//! | webpki `Error` | status |
//! |---|---|
//! | `CertExpired` | `expired` |
//! | `CertNotValidYet` | `not_yet_valid` |
//! | `CertRevoked` | `revoked` |
//! | `UnknownIssuer`, `InvalidSignatureForPublicKey`, an unsupported signature algorithm, `EndEntityUsedAsCa` (a CA that may not sign certificates) | `untrusted` ("no trusted CA … signed …") |
//! | `MaximumPathDepthExceeded` | `untrusted` ("certificate chain too long") |
//! | `PathLenConstraintViolated`, `UnsupportedCriticalExtension`, `CaUsedAsEndEntity`, a CRL with a wrong signature, malformed DER, anything else | `untrusted` |
//!
//! `key_mismatch` is decided before webpki runs (the certificate's key against the card's).
//! [`TrustStore::check_insurer`] asks webpki for the extended key usage [`OID_INSURER_RETURNS`]
//! on the certificate and on every intermediate CA above it (`RequiredEkuNotFoundContext`: "not
//! an insurer's" when the certificate lacks it, "may not certify insurers" when a CA does); when
//! a root issued the certificate itself, the root must carry it too.

use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};
use webpki::{
    BorrowedCertRevocationList, CertRevocationList, EndEntityCert, ExpirationPolicy,
    ExtendedKeyUsageValidator, KeyPurposeIdIter, KeyUsage, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy, VerifiedPath,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

/// Object identifier of Ed25519 (RFC 8410), as an algorithm of keys and of signatures.
pub const OID_ED25519: &str = "1.3.101.112";

/// Extended key usage (RFC 5280 4.2.1.12) of an insurer's certificate, the key that signs its
/// ARLs and payment returns, and of the CA that issues those certificates: a certificate is an
/// insurer's only when it and its issuing CA both carry it, so no card CA can make one.
/// (A UUID-based object identifier, X.667: `2.25.` and a UUID as one integer.)
pub const OID_INSURER_RETURNS: &str = "2.25.329895794085693350506390115799385214579";

/// [`OID_INSURER_RETURNS`] as the content octets of its DER `OBJECT IDENTIFIER` (its last arc
/// does not fit 64 bits, so it is compared as bytes).
pub const OID_INSURER_RETURNS_DER: [u8; 20] = [
    0x69, 0x83, 0xf0, 0xaf, 0xcf, 0x9b, 0x80, 0xc4, 0xba, 0xbd, 0xc1, 0xb3, 0x98, 0xa6, 0xed, 0xe4,
    0x98, 0x9e, 0x9c, 0x73,
];

/// Extended key usage of a Vitale app's certificate (the key the phone app signs its presence
/// tokens with, [`crate::app`]) and of the Vitale-app CA that issues them: as for insurers, a
/// certificate is an app's only when it and its issuing CA carry it, so neither a card CA nor
/// the insurer CA can make an app. (A UUID-based object identifier, X.667.)
pub const OID_VITALE_APP: &str = "2.25.306431764273232319308911419822678654026";

/// [`OID_VITALE_APP`] as the content octets of its DER `OBJECT IDENTIFIER`.
pub const OID_VITALE_APP_DER: [u8; 20] = [
    0x69, 0x83, 0xcd, 0x88, 0xce, 0x9b, 0xe7, 0xfb, 0xaa, 0xaa, 0x99, 0x88, 0xfb, 0x90, 0xf2, 0x81,
    0x8d, 0xca, 0xf8, 0x4a,
];

/// Object identifier of the X.520 `serialNumber` attribute: in an insurer's certificate, the
/// insurer's code (AMO organism code or AMC number); in a card's, the holder's identifier.
pub const OID_SERIAL_NUMBER_ATTRIBUTE: &str = "2.5.4.5";

/// Longest chain followed from a card certificate to a root when naming the link a refusal is
/// about (webpki's own limit bounds the path it builds).
const MAX_DEPTH: usize = 4;

/// Signature algorithms webpki accepts in a chain and on a CRL: Ed25519 alone.
static SIGNATURE_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[webpki::ring::ED25519];

/// A trust-store file that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PkiError {
    /// Neither PEM nor DER of the expected kind.
    #[error("{what}: {reason}")]
    Malformed {
        /// What was being read ("certificate", "CRL").
        what: &'static str,
        /// Why it does not parse.
        reason: String,
    },
}

/// What the trust store says of a card's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertStatus {
    /// Chains to a trusted root, within its dates, not revoked.
    Valid,
    /// On its CA's revocation list (a CPS declared lost or stolen; a Vitale card in opposition).
    Revoked,
    /// Past its `notAfter`.
    Expired,
    /// Before its `notBefore`.
    NotYetValid,
    /// Does not chain to a trusted root, or a signature in the chain is wrong.
    Untrusted,
    /// The certificate's key is not the card's key.
    KeyMismatch,
    /// The card holds no certificate.
    Missing,
    /// No trust store is configured: nothing was checked.
    Unchecked,
}

/// The outcome of checking one card certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertCheck {
    /// The verdict.
    pub status: CertStatus,
    /// Subject of the card certificate (RFC 4514 text), when it parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Serial number of the card certificate, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// End of validity, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// Whether a CRL of the card's CA was found and checked.
    pub revocation_checked: bool,
    /// Why the status is not `valid`, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl CertCheck {
    fn bare(status: CertStatus, reason: impl Into<String>) -> CertCheck {
        CertCheck {
            status,
            subject: None,
            serial: None,
            not_after: None,
            revocation_checked: false,
            reason: Some(reason.into()),
        }
    }

    /// Nothing was checked: no trust store is configured.
    pub fn unchecked() -> CertCheck {
        CertCheck::bare(CertStatus::Unchecked, "no trust store configured")
    }

    /// Why a card with this certificate may not be used, if it may not. `Unchecked` is let through
    /// (the daemon warns at start-up that no trust store is configured).
    pub fn refusal(&self) -> Option<String> {
        match self.status {
            CertStatus::Valid | CertStatus::Unchecked => None,
            _ => Some(
                self.reason
                    .clone()
                    .unwrap_or_else(|| format!("certificate {:?}", self.status)),
            ),
        }
    }
}

/// Trusted roots, intermediate CAs and revocation lists, as DER.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    /// Self-signed CA certificates.
    roots: Vec<CertificateDer<'static>>,
    /// `roots` as webpki's trust anchors, in the same order.
    anchors: Vec<TrustAnchor<'static>>,
    /// The other CA certificates.
    intermediates: Vec<CertificateDer<'static>>,
    /// Revocation lists (each parses with x509-parser and with webpki).
    crls: Vec<Vec<u8>>,
}

/// Splits PEM text into the DER blocks labelled `label`, or takes `bytes` as one DER block.
fn der_blocks(bytes: &[u8], label: &str, what: &'static str) -> Result<Vec<Vec<u8>>, PkiError> {
    let text = std::str::from_utf8(bytes).ok();
    let Some(text) = text.filter(|t| t.trim_start().starts_with("-----BEGIN")) else {
        return Ok(vec![bytes.to_vec()]);
    };
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
        let pem = pem.map_err(|e| PkiError::Malformed {
            what,
            reason: format!("PEM: {e}"),
        })?;
        if pem.label == label {
            out.push(pem.contents);
        }
    }
    if out.is_empty() {
        return Err(PkiError::Malformed {
            what,
            reason: format!("no PEM block labelled {label}"),
        });
    }
    Ok(out)
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| unix.to_string())
}

/// Verifies an Ed25519 signature made by the key of `spki`.
fn ed25519_verifies(
    spki: &SubjectPublicKeyInfo<'_>,
    alg: &AlgorithmIdentifier<'_>,
    message: &[u8],
    signature: &[u8],
) -> bool {
    if alg.algorithm.to_id_string() != OID_ED25519
        || spki.algorithm.algorithm.to_id_string() != OID_ED25519
    {
        return false;
    }
    let (Ok(key), Ok(sig)) = (
        <[u8; 32]>::try_from(spki.subject_public_key.data.as_ref()),
        Signature::from_slice(signature),
    ) else {
        return false;
    };
    VerifyingKey::from_bytes(&key).is_ok_and(|k| k.verify_strict(message, &sig).is_ok())
}

fn cert_verifies(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    ed25519_verifies(
        issuer.public_key(),
        &cert.signature_algorithm,
        cert.tbs_certificate.as_ref(),
        &cert.signature_value.data,
    )
}

fn is_ca(cert: &X509Certificate<'_>) -> bool {
    let ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    let may_sign = match cert.key_usage() {
        Ok(Some(ku)) => ku.value.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    ca && may_sign
}

/// Whether `cert` lists the purpose `oid` (DER content octets) among its extended key usages.
fn has_purpose(cert: &X509Certificate<'_>, oid: &[u8]) -> bool {
    matches!(cert.extended_key_usage(), Ok(Some(eku))
        if eku.value.other.iter().any(|o| o.as_bytes() == oid))
}

/// A signer whose certificate and CA carry a dedicated extended key usage: an insurer or a
/// Vitale app. The words name it in refusals.
struct Purpose {
    /// The usage webpki requires of the certificate and every intermediate CA.
    usage: KeyUsage,
    /// Its DER content octets.
    oid: &'static [u8],
    /// "insurer", "Vitale app".
    what: &'static str,
    /// "an insurer", "a Vitale app".
    a_what: &'static str,
    /// "insurer-returns", "Vitale-app".
    usage_name: &'static str,
    /// What the subject serialNumber names: "insurer code", "app serial".
    names: &'static str,
}

const INSURER: Purpose = Purpose {
    usage: INSURER_USAGE,
    oid: &OID_INSURER_RETURNS_DER,
    what: "insurer",
    a_what: "an insurer",
    usage_name: "insurer-returns",
    names: "insurer code",
};

const VITALE_APP: Purpose = Purpose {
    usage: KeyUsage::required(&OID_VITALE_APP_DER),
    oid: &OID_VITALE_APP_DER,
    what: "Vitale app",
    a_what: "a Vitale app",
    usage_name: "Vitale-app",
    names: "app serial",
};

/// The subject's `serialNumber` attribute, when there is exactly one and it is text.
fn subject_serial_number(cert: &X509Certificate<'_>) -> Option<String> {
    let mut found = cert
        .subject()
        .iter_attributes()
        .filter(|a| a.attr_type().to_id_string() == OID_SERIAL_NUMBER_ATTRIBUTE);
    let first = found.next()?.as_str().ok()?.to_string();
    found.next().is_none().then_some(first)
}

/// The time webpki checks dates at: `now` (Unix seconds), or the epoch for an earlier one.
fn unix_time(now: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)))
}

/// Unix seconds of a webpki time (saturating: no certificate date reaches `i64::MAX`).
fn unix_seconds(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

/// The chain's webpki check of a card certificate: any extended key usage (or none) is
/// accepted, as long as the extension is well-formed: a card's use is not told by its EKU.
struct AnyUsage;

impl ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for purpose in iter {
            purpose?;
        }
        Ok(())
    }
}

/// The extended key usage an insurer's certificate and every intermediate CA above it carry.
const INSURER_USAGE: KeyUsage = KeyUsage::required(&OID_INSURER_RETURNS_DER);

impl TrustStore {
    /// Checks the certificate (DER) of an insurer signing a return, at `now` (Unix seconds), and
    /// gives the insurer's code it names (its subject's `serialNumber`) and its Ed25519 key.
    ///
    /// It must chain to a trusted root as a card's does ([`TrustStore::check`]: signatures,
    /// dates, CRLs), carry the extended key usage [`OID_INSURER_RETURNS`], and so must the CA
    /// that issued it. `Err` says why not, in words.
    pub fn check_insurer(&self, cert_der: &[u8], now: i64) -> Result<(String, [u8; 32]), String> {
        self.check_signer(cert_der, now, &INSURER)
    }

    /// Checks the certificate (DER) of a Vitale app ([`crate::app`]) at `now` (Unix seconds)
    /// as [`TrustStore::check_insurer`] checks an insurer's, with the usage [`OID_VITALE_APP`]
    /// on it and its CA; gives the app serial it names (subject `serialNumber`) and its key.
    pub fn check_app(&self, cert_der: &[u8], now: i64) -> Result<(String, [u8; 32]), String> {
        self.check_signer(cert_der, now, &VITALE_APP)
    }

    fn check_signer(
        &self,
        cert_der: &[u8],
        now: i64,
        purpose: &Purpose,
    ) -> Result<(String, [u8; 32]), String> {
        let what = purpose.what;
        let leaf = X509Certificate::from_der(cert_der)
            .map_err(|e| format!("{what} certificate does not parse: {e}"))?
            .1;
        let key = <[u8; 32]>::try_from(leaf.public_key().subject_public_key.data.as_ref())
            .ok()
            .filter(|_| leaf.public_key().algorithm.algorithm.to_id_string() == OID_ED25519)
            .ok_or_else(|| format!("{what} certificate: not an Ed25519 key"))?;
        let intermediates = match self.verify_chain(cert_der, now, purpose.usage) {
            Ok(n) => n,
            Err(webpki::Error::RequiredEkuNotFoundContext(_))
                if !has_purpose(&leaf, purpose.oid) =>
            {
                return Err(format!(
                    "certificate {} is not {}'s (no {} key usage)",
                    leaf.subject(),
                    purpose.a_what,
                    purpose.usage_name
                ))
            }
            Err(webpki::Error::RequiredEkuNotFoundContext(_)) => {
                return Err(issuer_may_not(&leaf, purpose))
            }
            Err(e) => return Err(self.refusal(&e, &leaf).1),
        };
        // webpki does not look at a trust anchor's extensions: a root that issued the
        // certificate itself must carry the usage too.
        let root_may = || {
            self.roots
                .iter()
                .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
                .any(|c| {
                    c.subject().as_raw() == leaf.issuer().as_raw()
                        && cert_verifies(&leaf, &c)
                        && has_purpose(&c, purpose.oid)
                })
        };
        if intermediates == 0 && !root_may() {
            return Err(issuer_may_not(&leaf, purpose));
        }
        let code = subject_serial_number(&leaf)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                format!(
                    "certificate {} names no {} (one subject serialNumber)",
                    leaf.subject(),
                    purpose.names
                )
            })?;
        Ok((code, key))
    }

    /// An empty store: it trusts nothing.
    pub fn new() -> TrustStore {
        TrustStore::default()
    }

    /// Adds CA certificates (PEM with any number of `CERTIFICATE` blocks, or one DER). Self-signed
    /// ones become trusted roots, the others intermediates. Returns how many were added.
    pub fn add_certificates(&mut self, bytes: &[u8]) -> Result<usize, PkiError> {
        let blocks = der_blocks(bytes, "CERTIFICATE", "certificate")?;
        let n = blocks.len();
        for der in blocks {
            let (_, cert) = X509Certificate::from_der(&der).map_err(|e| PkiError::Malformed {
                what: "certificate",
                reason: e.to_string(),
            })?;
            let self_signed =
                cert.subject().as_raw() == cert.issuer().as_raw() && cert_verifies(&cert, &cert);
            let der = CertificateDer::from(der);
            if self_signed {
                let anchor = webpki::anchor_from_trusted_cert(&der)
                    .map_err(|e| PkiError::Malformed {
                        what: "certificate",
                        reason: format!("not usable as a trusted root: {e:?}"),
                    })?
                    .to_owned();
                self.anchors.push(anchor);
                self.roots.push(der);
            } else {
                self.intermediates.push(der);
            }
        }
        Ok(n)
    }

    /// Adds revocation lists (PEM `X509 CRL` blocks, or one DER). Their signatures are checked
    /// when used. Returns how many were added.
    pub fn add_crls(&mut self, bytes: &[u8]) -> Result<usize, PkiError> {
        let blocks = der_blocks(bytes, "X509 CRL", "CRL")?;
        let n = blocks.len();
        for der in blocks {
            CertificateRevocationList::from_der(&der).map_err(|e| PkiError::Malformed {
                what: "CRL",
                reason: e.to_string(),
            })?;
            // Refused here rather than left out of every check unseen.
            BorrowedCertRevocationList::from_der(&der).map_err(|e| PkiError::Malformed {
                what: "CRL",
                reason: format!("not usable: {e:?}"),
            })?;
            self.crls.push(der);
        }
        Ok(n)
    }

    /// Number of roots, intermediates and CRLs held.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.roots.len(), self.intermediates.len(), self.crls.len())
    }

    /// Has webpki build and check the path of `cert_der` up to a root at `now`, the CRLs of every
    /// CA in it included, with the extended key usage `usage`. Gives the number of intermediate
    /// CAs in the path found.
    fn verify_chain(
        &self,
        cert_der: &[u8],
        now: i64,
        usage: impl ExtendedKeyUsageValidator,
    ) -> Result<usize, webpki::Error> {
        let der = CertificateDer::from(cert_der);
        let ee = EndEntityCert::try_from(&der)?;
        // Every CRL parsed when added (`add_crls`), so none is left out here.
        let crls: Vec<CertRevocationList<'_>> = self
            .crls
            .iter()
            .filter_map(|der| BorrowedCertRevocationList::from_der(der).ok())
            .map(CertRevocationList::from)
            .collect();
        let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
        // `Err` only when there is no CRL at all: then nothing is checked for revocation.
        let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .with_expiration_policy(ExpirationPolicy::Ignore)
                .build()
        });
        let issuers_fit = |path: &VerifiedPath<'_>| self.issuers_fit(path, cert_der, now);
        let path = ee.verify_for_usage(
            SIGNATURE_ALGORITHMS,
            &self.anchors,
            &self.intermediates,
            unix_time(now),
            usage,
            revocation,
            Some(&issuers_fit),
        )?;
        Ok(path.intermediate_certificates().count())
    }

    /// What webpki leaves to its caller on a path it proposes: every intermediate CA may sign
    /// certificates (keyUsage `keyCertSign` when present), and the root is within its dates and
    /// is a CA that may sign certificates (unless it is the certificate checked itself).
    fn issuers_fit(
        &self,
        path: &VerifiedPath<'_>,
        leaf_der: &[u8],
        now: i64,
    ) -> Result<(), webpki::Error> {
        let may_sign = |der: &[u8]| X509Certificate::from_der(der).is_ok_and(|(_, c)| is_ca(&c));
        if !path
            .intermediate_certificates()
            .all(|c| may_sign(c.der().as_ref()))
        {
            return Err(webpki::Error::EndEntityUsedAsCa);
        }
        let root = self
            .anchors
            .iter()
            .position(|a| std::ptr::eq(a, path.anchor()))
            .and_then(|i| self.roots.get(i))
            .ok_or(webpki::Error::UnknownIssuer)?;
        let (_, cert) = X509Certificate::from_der(root).map_err(|_| webpki::Error::BadDer)?;
        let validity = cert.validity();
        if validity.not_before.timestamp() > now {
            return Err(webpki::Error::CertNotValidYet {
                time: unix_time(now),
                not_before: unix_time(validity.not_before.timestamp()),
            });
        }
        if validity.not_after.timestamp() < now {
            return Err(webpki::Error::CertExpired {
                time: unix_time(now),
                not_after: unix_time(validity.not_after.timestamp()),
            });
        }
        if root.as_ref() != leaf_der && !is_ca(&cert) {
            return Err(webpki::Error::EndEntityUsedAsCa);
        }
        Ok(())
    }

    /// The roots and intermediates held, parsed for their names.
    fn known(&self) -> Vec<X509Certificate<'_>> {
        self.roots
            .iter()
            .chain(&self.intermediates)
            .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
            .collect()
    }

    /// The status and the reason in words of webpki's refusal `err` of the chain of `leaf`.
    fn refusal(&self, err: &webpki::Error, leaf: &X509Certificate<'_>) -> (CertStatus, String) {
        let subject = leaf.subject();
        match err {
            webpki::Error::CertExpired { not_after, .. } => {
                let t = unix_seconds(*not_after);
                let known = self.known();
                let c = dated(leaf, &known, |c| c.validity().not_after.timestamp() == t);
                let reason = format!("certificate {} expired on {}", c.subject(), rfc3339(t));
                (CertStatus::Expired, reason)
            }
            webpki::Error::CertNotValidYet { not_before, .. } => {
                let t = unix_seconds(*not_before);
                let known = self.known();
                let c = dated(leaf, &known, |c| c.validity().not_before.timestamp() == t);
                let reason = format!(
                    "certificate {} not valid before {}",
                    c.subject(),
                    rfc3339(t)
                );
                (CertStatus::NotYetValid, reason)
            }
            webpki::Error::CertRevoked => (CertStatus::Revoked, self.revoked_one(leaf)),
            webpki::Error::UnknownIssuer
            | webpki::Error::InvalidSignatureForPublicKey
            | webpki::Error::UnsupportedSignatureAlgorithmContext(_)
            | webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
            | webpki::Error::SignatureAlgorithmMismatch
            | webpki::Error::EndEntityUsedAsCa => (CertStatus::Untrusted, self.broken_link(leaf)),
            webpki::Error::MaximumPathDepthExceeded => (
                CertStatus::Untrusted,
                "certificate chain too long".to_string(),
            ),
            webpki::Error::PathLenConstraintViolated => (
                CertStatus::Untrusted,
                format!("the chain of certificate {subject} exceeds a CA's path length constraint"),
            ),
            webpki::Error::UnsupportedCriticalExtension => (
                CertStatus::Untrusted,
                format!("the chain of certificate {subject} has an unknown critical extension"),
            ),
            webpki::Error::CaUsedAsEndEntity => (
                CertStatus::Untrusted,
                format!("certificate {subject} is a CA's, not an end entity's"),
            ),
            webpki::Error::InvalidCrlSignatureForPublicKey => (
                CertStatus::Untrusted,
                format!(
                    "a revocation list on the chain of certificate {subject} has a wrong signature"
                ),
            ),
            other => (
                CertStatus::Untrusted,
                format!("certificate {subject} refused: {other:?}"),
            ),
        }
    }

    /// Names the certificate of the chain of `leaf` (it or a CA above it) that a CRL of its issuer
    /// lists, for the reason of a `revoked` verdict.
    fn revoked_one(&self, leaf: &X509Certificate<'_>) -> String {
        let crls: Vec<CertificateRevocationList<'_>> = self
            .crls
            .iter()
            .filter_map(|der| {
                CertificateRevocationList::from_der(der)
                    .ok()
                    .map(|(_, c)| c)
            })
            .collect();
        let listed = |c: &X509Certificate<'_>| {
            crls.iter().any(|crl| {
                crl.issuer().as_raw() == c.issuer().as_raw()
                    && crl
                        .iter_revoked_certificates()
                        .any(|r| r.raw_serial() == c.raw_serial())
            })
        };
        let known = self.known();
        let c = if listed(leaf) {
            leaf
        } else {
            known.iter().find(|c| listed(c)).unwrap_or(leaf)
        };
        format!(
            "certificate {} (serial {}) is on the revocation list of {}",
            c.subject(),
            hex::encode_upper(c.raw_serial()),
            c.issuer()
        )
    }

    /// Names the link of the chain of `leaf` no trusted CA signed, for the reason of an
    /// `untrusted` verdict: the chain is followed up by names and signatures (at most
    /// [`MAX_DEPTH`] CAs) to the first certificate whose issuer is not held; `leaf` when it
    /// reaches a root (the path failed on something else).
    fn broken_link(&self, leaf: &X509Certificate<'_>) -> String {
        let known = self.known();
        let is_root = |c: &X509Certificate<'_>| self.roots.iter().any(|r| r.as_ref() == c.as_raw());
        let mut current = leaf;
        for _ in 0..=MAX_DEPTH {
            if is_root(current) {
                current = leaf;
                break;
            }
            let issuer = known.iter().find(|c| {
                c.subject().as_raw() == current.issuer().as_raw()
                    && is_ca(c)
                    && cert_verifies(current, c)
            });
            match issuer {
                Some(next) => current = next,
                None => break,
            }
        }
        format!(
            "no trusted CA {} signed {}",
            current.issuer(),
            current.subject()
        )
    }

    /// Checks a card certificate (DER) against this store at `now` (Unix seconds): its key must be
    /// `card_key`, its chain must reach a trusted root with good signatures and dates, and neither it
    /// nor a CA above it may be on a CRL of its issuer.
    pub fn check(&self, cert_der: &[u8], card_key: &[u8; 32], now: i64) -> CertCheck {
        let leaf = match X509Certificate::from_der(cert_der) {
            Ok((_, c)) => c,
            Err(e) => {
                return CertCheck::bare(
                    CertStatus::Untrusted,
                    format!("card certificate does not parse: {e}"),
                )
            }
        };
        let mut out = CertCheck {
            status: CertStatus::Valid,
            subject: Some(leaf.subject().to_string()),
            serial: Some(hex::encode_upper(leaf.raw_serial())),
            not_after: Some(rfc3339(leaf.validity().not_after.timestamp())),
            revocation_checked: false,
            reason: None,
        };
        if leaf.public_key().algorithm.algorithm.to_id_string() != OID_ED25519
            || leaf.public_key().subject_public_key.data.as_ref() != card_key
        {
            out.status = CertStatus::KeyMismatch;
            out.reason = Some("the certificate's key is not the card's key".into());
            return out;
        }
        match self.verify_chain(cert_der, now, AnyUsage) {
            Ok(_) => {
                // webpki checked the CRL of the card's issuer if one is held (its signature too:
                // a wrong one is a refusal).
                out.revocation_checked = self.crls.iter().any(|der| {
                    CertificateRevocationList::from_der(der)
                        .is_ok_and(|(_, crl)| crl.issuer().as_raw() == leaf.issuer().as_raw())
                });
            }
            Err(e) => {
                let (status, reason) = self.refusal(&e, &leaf);
                out.revocation_checked = status == CertStatus::Revoked;
                out.status = status;
                out.reason = Some(reason);
            }
        }
        out
    }
}

/// `leaf` if `dated` holds of it, else the first of `known` it holds of, else `leaf`: the
/// certificate a date refusal is about.
fn dated<'a>(
    leaf: &'a X509Certificate<'a>,
    known: &'a [X509Certificate<'a>],
    dated: impl Fn(&X509Certificate<'_>) -> bool,
) -> &'a X509Certificate<'a> {
    if dated(leaf) {
        return leaf;
    }
    known.iter().find(|c| dated(c)).unwrap_or(leaf)
}

/// Why the issuer of `leaf` may not certify this kind of signer.
fn issuer_may_not(leaf: &X509Certificate<'_>, purpose: &Purpose) -> String {
    format!(
        "CA {} may not certify {}s (no {} key usage)",
        leaf.issuer(),
        purpose.what,
        purpose.usage_name
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_empty_store_trusts_nothing_and_garbage_is_named() {
        let store = TrustStore::new();
        let c = store.check(b"not a certificate", &[0; 32], 0);
        assert_eq!(c.status, CertStatus::Untrusted);
        assert!(c.refusal().is_some());
        assert!(CertCheck::unchecked().refusal().is_none());
        let mut s = TrustStore::new();
        assert!(matches!(
            s.add_certificates(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(PkiError::Malformed {
                what: "certificate",
                ..
            })
        ));
        assert!(matches!(
            s.add_crls(b"\x30\x03\x02\x01\x01"),
            Err(PkiError::Malformed { what: "CRL", .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut s = TrustStore::new();
            let _ = s.add_certificates(&bytes);
            let _ = s.add_crls(&bytes);
            let _ = s.check(&bytes, &[7; 32], 1_700_000_000);
            let _ = s.check_insurer(&bytes, 1_700_000_000);
            let _ = s.check_app(&bytes, 1_700_000_000);
        }
    }
}
