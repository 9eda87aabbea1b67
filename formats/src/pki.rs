//! Certificate checks: the X.509 certificate of a card (Ed25519 keys and
//! signatures, RFC 8410), its chain up to a trusted root, and the revocation
//! lists (RFC 5280 CRLs: the CPS CA's lists revoked professional cards, the
//! Vitale CA's is the opposition list of lost or stolen Vitale cards).
//!
//! Pure functions of (certificates, CRLs, time): the daemon reads the files,
//! the simulator issues them (`fse-sim pki`). Only Ed25519 is accepted.

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
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

/// Object identifier of the X.520 `serialNumber` attribute: in an insurer's certificate, the
/// insurer's code (AMO organism code or AMC number); in a card's, the holder's identifier.
pub const OID_SERIAL_NUMBER_ATTRIBUTE: &str = "2.5.4.5";

/// Longest chain followed from a card certificate to a root.
const MAX_DEPTH: usize = 4;

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
    roots: Vec<Vec<u8>>,
    intermediates: Vec<Vec<u8>>,
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

/// Whether `cert` lists [`OID_INSURER_RETURNS`] among its extended key usages.
fn may_sign_returns(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.extended_key_usage(), Ok(Some(eku))
        if eku.value.other.iter().any(|o| o.as_bytes() == OID_INSURER_RETURNS_DER))
}

/// The subject's `serialNumber` attribute, when there is exactly one and it is text.
fn subject_serial_number(cert: &X509Certificate<'_>) -> Option<String> {
    let mut found = cert
        .subject()
        .iter_attributes()
        .filter(|a| a.attr_type().to_id_string() == OID_SERIAL_NUMBER_ATTRIBUTE);
    let first = found.next()?.as_str().ok()?.to_string();
    found.next().is_none().then_some(first)
}

impl TrustStore {
    /// Checks the certificate (DER) of an insurer signing a return, at `now` (Unix seconds), and
    /// gives the insurer's code it names (its subject's `serialNumber`) and its Ed25519 key.
    ///
    /// It must chain to a trusted root as a card's does ([`TrustStore::check`]: signatures,
    /// dates, CRLs), carry the extended key usage [`OID_INSURER_RETURNS`], and so must the CA
    /// that issued it. `Err` says why not, in words.
    pub fn check_insurer(&self, cert_der: &[u8], now: i64) -> Result<(String, [u8; 32]), String> {
        let leaf = X509Certificate::from_der(cert_der)
            .map_err(|e| format!("insurer certificate does not parse: {e}"))?
            .1;
        let key = <[u8; 32]>::try_from(leaf.public_key().subject_public_key.data.as_ref())
            .ok()
            .filter(|_| leaf.public_key().algorithm.algorithm.to_id_string() == OID_ED25519)
            .ok_or_else(|| "insurer certificate: not an Ed25519 key".to_string())?;
        let check = self.check(cert_der, &key, now);
        if check.status != CertStatus::Valid {
            return Err(check
                .reason
                .unwrap_or_else(|| format!("certificate {:?}", check.status)));
        }
        if !may_sign_returns(&leaf) {
            return Err(format!(
                "certificate {} is not an insurer's (no insurer-returns key usage)",
                leaf.subject()
            ));
        }
        let issuer_may = self
            .roots
            .iter()
            .chain(&self.intermediates)
            .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
            .any(|c| {
                c.subject().as_raw() == leaf.issuer().as_raw()
                    && is_ca(&c)
                    && cert_verifies(&leaf, &c)
                    && may_sign_returns(&c)
            });
        if !issuer_may {
            return Err(format!(
                "CA {} may not certify insurers (no insurer-returns key usage)",
                leaf.issuer()
            ));
        }
        let code = subject_serial_number(&leaf)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                format!(
                    "certificate {} names no insurer code (one subject serialNumber)",
                    leaf.subject()
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
            if self_signed {
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
            self.crls.push(der);
        }
        Ok(n)
    }

    /// Number of roots, intermediates and CRLs held.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.roots.len(), self.intermediates.len(), self.crls.len())
    }

    /// Whether `serial` of a certificate issued by `issuer` is on a CRL signed by that issuer.
    /// `None` when no CRL of that issuer is held.
    fn revoked(&self, issuer: &X509Certificate<'_>, serial: &[u8]) -> Option<bool> {
        let mut seen = false;
        for der in &self.crls {
            let Ok((_, crl)) = CertificateRevocationList::from_der(der) else {
                continue;
            };
            if crl.issuer().as_raw() != issuer.subject().as_raw()
                || !ed25519_verifies(
                    issuer.public_key(),
                    &crl.signature_algorithm,
                    crl.tbs_cert_list.as_ref(),
                    &crl.signature_value.data,
                )
            {
                continue;
            }
            seen = true;
            if crl
                .iter_revoked_certificates()
                .any(|r| r.raw_serial() == serial)
            {
                return Some(true);
            }
        }
        seen.then_some(false)
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
        let verdict = |mut out: CertCheck, status, reason: String| {
            out.status = status;
            out.reason = Some(reason);
            out
        };
        if leaf.public_key().algorithm.algorithm.to_id_string() != OID_ED25519
            || leaf.public_key().subject_public_key.data.as_ref() != card_key
        {
            return verdict(
                out,
                CertStatus::KeyMismatch,
                "the certificate's key is not the card's key".into(),
            );
        }
        let mut chain = vec![leaf];
        while let Some(current) = chain.last() {
            let depth = chain.len();
            let v = current.validity();
            if v.not_before.timestamp() > now {
                return verdict(
                    out,
                    CertStatus::NotYetValid,
                    format!(
                        "certificate {} not valid before {}",
                        current.subject(),
                        rfc3339(v.not_before.timestamp())
                    ),
                );
            }
            if v.not_after.timestamp() < now {
                return verdict(
                    out,
                    CertStatus::Expired,
                    format!(
                        "certificate {} expired on {}",
                        current.subject(),
                        rfc3339(v.not_after.timestamp())
                    ),
                );
            }
            let is_root = self.roots.iter().any(|r| r.as_slice() == current.as_raw());
            if is_root {
                return out;
            }
            if depth > MAX_DEPTH {
                return verdict(
                    out,
                    CertStatus::Untrusted,
                    "certificate chain too long".into(),
                );
            }
            let issuer = self
                .roots
                .iter()
                .chain(&self.intermediates)
                .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
                .find(|c| {
                    c.subject().as_raw() == current.issuer().as_raw()
                        && is_ca(c)
                        && cert_verifies(current, c)
                });
            let Some(issuer) = issuer else {
                return verdict(
                    out,
                    CertStatus::Untrusted,
                    format!(
                        "no trusted CA {} signed {}",
                        current.issuer(),
                        current.subject()
                    ),
                );
            };
            match self.revoked(&issuer, current.raw_serial()) {
                Some(true) => {
                    out.revocation_checked = true;
                    return verdict(
                        out,
                        CertStatus::Revoked,
                        format!(
                            "certificate {} (serial {}) is on the revocation list of {}",
                            current.subject(),
                            hex::encode_upper(current.raw_serial()),
                            issuer.subject()
                        ),
                    );
                }
                Some(false) if depth == 1 => out.revocation_checked = true,
                _ => {}
            }
            chain.push(issuer);
        }
        out
    }
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
        }
    }
}
