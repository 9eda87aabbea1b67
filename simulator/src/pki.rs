//! The test PKI of the simulated cards and insurers: a root CA, four
//! intermediate CAs (one for CPS, one for Vitale cards, one for insurers, one for
//! Vitale apps: `crate::app::pki`), an
//! X.509 certificate per card (Ed25519, RFC 8410) and a CRL per card CA: the
//! CPS CA's lists revoked CPS, the Vitale CA's is the opposition list of lost
//! or stolen Vitale cards. The insurer CA certifies the key each simulated
//! insurer signs its ARLs and payment returns with: its certificate names the
//! insurer's code (AMO organism code or AMC number) as the subject's
//! `serialNumber` and carries the insurer-returns extended key usage
//! ([`fse_formats::pki::OID_INSURER_RETURNS`]), as does the insurer CA's own
//! certificate; a certificate can be made for any code on demand.
//!
//! Every key is a test key derived from a fixed label, so the certificates
//! are the same on every run and every machine (Ed25519 signatures are
//! deterministic); only the CRLs carry the time they were made. The CA keys
//! never leave this module; the card keys stay in the simulated cards.
//! `fse-sim pki --out DIR` writes the trust store fsed and `openssl verify` use.

use std::sync::OnceLock;

use ed25519_dalek::Signer;
use fse_formats::cards::CpsHolder;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    CustomExtension, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyUsagePurpose, PublicKeyData,
    RevocationReason, RevokedCertParams, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::profile_keys::{test_key, ProfileError};

/// Files of a trust store, as fsed reads them from its trust directory.
pub const ROOT_FILE: &str = "root.pem";
/// The intermediate CAs.
pub const CA_FILE: &str = "ca.pem";
/// The revocation lists of both card CAs.
pub const CRL_FILE: &str = "crl.pem";
/// Folder (under the trust store's) of the insurers' certificates `fse-sim pki` writes.
pub const INSURERS_DIR: &str = "insurers";

/// A test PKI that cannot be built or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Certificate or CRL generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A date out of range.
    #[error("date {0}: out of range")]
    Date(String),
    /// Writing the files failed.
    #[error("{path}: {source}")]
    Write {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A built-in profile did not load.
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// An Ed25519 key usable by rcgen to sign (a CA key).
pub(crate) struct CaKey {
    key: ed25519_dalek::SigningKey,
    public: [u8; 32],
}

impl CaKey {
    pub(crate) fn derive(label: &str) -> CaKey {
        let key = test_key(&format!("ca:{label}"));
        let public = key.verifying_key().to_bytes();
        CaKey { key, public }
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl rcgen::SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

/// The public key of a card, to be certified.
pub(crate) struct CardKey(pub(crate) [u8; 32]);

impl PublicKeyData for CardKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

/// RFC 7093 method 1 key identifier: the first 20 bytes of SHA-256 of the SubjectPublicKeyInfo.
pub(crate) fn key_id(key: &impl PublicKeyData) -> KeyIdMethod {
    KeyIdMethod::PreSpecified(Sha256::digest(key.subject_public_key_info())[..20].to_vec())
}

/// The certificate serial of a card: 12 bytes derived from the card serial, positive, no leading zero.
pub fn certificate_serial(card_serial: &str) -> Vec<u8> {
    let mut b = Sha256::digest(format!("fsed-sim-cert:{card_serial}"))[..12].to_vec();
    b[0] = (b[0] & 0x7F) | 0x40;
    b
}

pub(crate) fn date(yyyymmdd: &str, end_of_day: bool) -> Result<OffsetDateTime, PkiError> {
    let d = chrono::NaiveDate::parse_from_str(yyyymmdd, "%Y%m%d")
        .map_err(|_| PkiError::Date(yyyymmdd.to_string()))?;
    let t = if end_of_day {
        d.and_hms_opt(23, 59, 59)
    } else {
        d.and_hms_opt(0, 0, 0)
    }
    .ok_or_else(|| PkiError::Date(yyyymmdd.to_string()))?;
    OffsetDateTime::from_unix_timestamp(t.and_utc().timestamp())
        .map_err(|_| PkiError::Date(yyyymmdd.to_string()))
}

pub(crate) fn name(cn: &str, extra: &[(DnType, String)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "FR");
    dn.push(DnType::OrganizationName, "fsed TEST PKI");
    for (t, v) in extra {
        dn.push(t.clone(), v.as_str());
    }
    dn.push(DnType::CommonName, cn);
    dn
}

/// OID of the X.520 serialNumber attribute, used for the card holder's identifier.
pub(crate) const SERIAL_NUMBER_ATTRIBUTE: &[u64] = &[2, 5, 4, 5];

/// The extended key usage extension (2.5.29.37) listing the insurer-returns purpose alone.
fn insurer_returns_usage() -> CustomExtension {
    usage_extension(&fse_formats::pki::OID_INSURER_RETURNS_DER)
}

/// The extended key usage extension listing the Vitale-app purpose alone.
pub(crate) fn vitale_app_usage() -> CustomExtension {
    usage_extension(&fse_formats::pki::OID_VITALE_APP_DER)
}

/// An extended key usage extension (2.5.29.37) listing the purpose `oid` (DER content) alone.
fn usage_extension(oid: &[u8; 20]) -> CustomExtension {
    // SEQUENCE { OBJECT IDENTIFIER }: both lengths are under 128 (20 and 22 bytes).
    let mut der = vec![0x30, oid.len() as u8 + 2, 0x06, oid.len() as u8];
    der.extend_from_slice(oid);
    CustomExtension::from_oid_content(&[2, 5, 29, 37], der)
}

/// The signing key of the simulated insurer `code` (AMO organism code or AMC number), derived
/// from its code as the CA keys are from their labels.
pub fn insurer_key(code: &str) -> ed25519_dalek::SigningKey {
    test_key(&format!("insurer:{code}"))
}

/// The certificate fields of insurer `code` (any issuer).
fn insurer_params(code: &str, key: &impl PublicKeyData) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(
        &format!("Organisme {code}"),
        &[(
            DnType::CustomDnType(SERIAL_NUMBER_ATTRIBUTE.to_vec()),
            code.to_string(),
        )],
    );
    p.not_before = date("20240101", false)?;
    p.not_after = date("20391231", true)?;
    p.serial_number = Some(SerialNumber::from_slice(&certificate_serial(&format!(
        "insurer:{code}"
    ))));
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.custom_extensions.push(insurer_returns_usage());
    p.key_identifier_method = key_id(key);
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// A self-signed certificate (DER) naming insurer `code`, with the insurer-returns usage, for
/// `key`: what anyone can make without the insurer CA (for tests showing it is refused).
pub fn self_signed_insurer_certificate(
    code: &str,
    key: ed25519_dalek::SigningKey,
) -> Result<Vec<u8>, PkiError> {
    let public = key.verifying_key().to_bytes();
    let forger = CaKey { key, public };
    let mut p = insurer_params(code, &forger)?;
    p.use_authority_key_identifier_extension = false;
    Ok(p.self_signed(&forger)?.der().to_vec())
}

pub(crate) fn ca_params(
    cn: &str,
    key: &CaKey,
    path_len: Option<u8>,
    until: &str,
) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cn, &[]);
    p.not_before = date("20240101", false)?;
    p.not_after = date(until, true)?;
    p.serial_number = Some(SerialNumber::from_slice(&certificate_serial(cn)));
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.key_identifier_method = key_id(key);
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// The test root, the CPS CA, the Vitale CA, the insurer CA and the Vitale-app CA.
pub struct TestPki {
    pub(crate) root: CertifiedIssuer<'static, CaKey>,
    cps_ca: CertifiedIssuer<'static, CaKey>,
    vitale_ca: CertifiedIssuer<'static, CaKey>,
    insurer_ca: CertifiedIssuer<'static, CaKey>,
    pub(crate) app_ca: CertifiedIssuer<'static, CaKey>,
}

impl TestPki {
    /// Builds the four CAs (the same certificates on every run).
    pub fn new() -> Result<TestPki, PkiError> {
        let root_key = CaKey::derive("root");
        let root = CertifiedIssuer::self_signed(
            ca_params("fsed TEST Root CA", &root_key, Some(1), "20441231")?,
            root_key,
        )?;
        let cps_key = CaKey::derive("cps");
        let cps_ca = CertifiedIssuer::signed_by(
            ca_params(
                "fsed TEST CA Professionnels de Sante",
                &cps_key,
                Some(0),
                "20391231",
            )?,
            cps_key,
            &root,
        )?;
        let vitale_key = CaKey::derive("vitale");
        let vitale_ca = CertifiedIssuer::signed_by(
            ca_params("fsed TEST CA Vitale", &vitale_key, Some(0), "20391231")?,
            vitale_key,
            &root,
        )?;
        let insurer_key = CaKey::derive("insurer");
        let mut insurer_params = ca_params(
            "fsed TEST CA Organismes d'assurance maladie",
            &insurer_key,
            Some(0),
            "20391231",
        )?;
        insurer_params
            .custom_extensions
            .push(insurer_returns_usage());
        let insurer_ca = CertifiedIssuer::signed_by(insurer_params, insurer_key, &root)?;
        let app_ca = crate::app::pki::app_ca(&root)?;
        Ok(TestPki {
            root,
            cps_ca,
            vitale_ca,
            insurer_ca,
            app_ca,
        })
    }

    /// The PKI shared by every simulated card of this process.
    pub fn shared() -> Result<&'static TestPki, String> {
        static PKI: OnceLock<Result<TestPki, String>> = OnceLock::new();
        PKI.get_or_init(|| TestPki::new().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The intermediate CA certificates, PEM: CPS, Vitale, insurers, Vitale apps.
    pub fn ca_pem(&self) -> String {
        format!(
            "{}{}{}{}",
            self.cps_ca.pem(),
            self.vitale_ca.pem(),
            self.insurer_ca.pem(),
            self.app_ca.pem()
        )
    }

    /// The certificate (DER) of the simulated insurer `code`, for the key of [`insurer_key`]:
    /// subject serialNumber = the code, extended key usage insurer-returns, issued by the
    /// insurer CA, valid 2024–2039.
    pub fn insurer_certificate(&self, code: &str) -> Result<Vec<u8>, PkiError> {
        let key = CardKey(insurer_key(code).verifying_key().to_bytes());
        Ok(insurer_params(code, &key)?
            .signed_by(&key, &self.insurer_ca)?
            .der()
            .to_vec())
    }

    /// The certificate (DER) of insurer `code` for another `key` than [`insurer_key`], issued
    /// by the insurer CA: the insurer's key after a rotation, which a trust store holding the
    /// insurer CA accepts without being told.
    pub fn insurer_certificate_for_key(
        &self,
        code: &str,
        key: &ed25519_dalek::VerifyingKey,
    ) -> Result<Vec<u8>, PkiError> {
        let key = CardKey(key.to_bytes());
        Ok(insurer_params(code, &key)?
            .signed_by(&key, &self.insurer_ca)?
            .der()
            .to_vec())
    }

    /// The certificate (DER) of a CPS: subject = holder, serialNumber attribute = national id;
    /// valid up to the card's last day.
    pub fn cps_certificate(
        &self,
        holder: &CpsHolder,
        public_key: &[u8; 32],
    ) -> Result<Vec<u8>, PkiError> {
        let mut p = CertificateParams::default();
        p.distinguished_name = name(
            &format!("{} {}", holder.surname, holder.given_name),
            &[(
                DnType::CustomDnType(SERIAL_NUMBER_ATTRIBUTE.to_vec()),
                holder.national_id.clone(),
            )],
        );
        let end = date(&holder.valid_until, true)?;
        p.not_after = end;
        // Issued three years before its last day, or on the test PKI's first day if later than
        // today could be (a card is never "not yet valid" in the simulator).
        p.not_before = end
            .replace_year(end.year() - 3)
            .map_err(|_| PkiError::Date(holder.valid_until.clone()))?
            .min(date("20240101", false)?);
        p.serial_number = Some(SerialNumber::from_slice(&certificate_serial(
            &holder.serial,
        )));
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        let key = CardKey(*public_key);
        p.key_identifier_method = key_id(&key);
        p.use_authority_key_identifier_extension = true;
        Ok(p.signed_by(&key, &self.cps_ca)?.der().to_vec())
    }

    /// The certificate (DER) of a Vitale card, for its proof-of-presence key.
    pub fn vitale_certificate(
        &self,
        card_serial: &str,
        public_key: &[u8; 32],
    ) -> Result<Vec<u8>, PkiError> {
        let mut p = CertificateParams::default();
        p.distinguished_name = name(
            &format!("Carte Vitale {card_serial}"),
            &[(
                DnType::CustomDnType(SERIAL_NUMBER_ATTRIBUTE.to_vec()),
                card_serial.to_string(),
            )],
        );
        p.not_before = date("20200101", false)?;
        p.not_after = date("20351231", true)?;
        p.serial_number = Some(SerialNumber::from_slice(&certificate_serial(card_serial)));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = CardKey(*public_key);
        p.key_identifier_method = key_id(&key);
        p.use_authority_key_identifier_extension = true;
        Ok(p.signed_by(&key, &self.vitale_ca)?.der().to_vec())
    }

    /// The CRLs of both CAs, PEM, made at `now` and valid 30 days: the CPS CA lists the
    /// `revoked` CPS serials, the Vitale CA the `opposed` Vitale serials.
    pub fn crl_pem(
        &self,
        revoked: &[String],
        opposed: &[String],
        now: OffsetDateTime,
    ) -> Result<String, PkiError> {
        let mut out = String::new();
        for (ca, serials, reason) in [
            (&self.cps_ca, revoked, RevocationReason::KeyCompromise),
            (
                &self.vitale_ca,
                opposed,
                RevocationReason::PrivilegeWithdrawn,
            ),
        ] {
            let params = CertificateRevocationListParams {
                this_update: now - time::Duration::hours(1),
                next_update: now + time::Duration::days(30),
                crl_number: SerialNumber::from(now.unix_timestamp().max(1) as u64),
                issuing_distribution_point: None,
                revoked_certs: serials
                    .iter()
                    .map(|s| RevokedCertParams {
                        serial_number: SerialNumber::from_slice(&certificate_serial(s)),
                        revocation_time: now - time::Duration::hours(1),
                        reason_code: Some(reason),
                        invalidity_date: None,
                    })
                    .collect(),
                key_identifier_method: key_id(&CaKey::derive(if std::ptr::eq(ca, &self.cps_ca) {
                    "cps"
                } else {
                    "vitale"
                })),
            };
            out.push_str(&params.signed_by(ca)?.pem()?);
        }
        Ok(out)
    }
}

/// PEM text of one DER block (RFC 7468).
pub fn pem_block(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

/// `fse-sim pki` options.
#[derive(Debug, Clone, clap::Args)]
pub struct PkiArgs {
    /// Directory to write the trust store, the card and the insurer certificates into.
    #[arg(long, default_value = "fsed-test-pki")]
    pub out: std::path::PathBuf,
}

/// Runs `fse-sim pki`.
pub fn run(args: &PkiArgs) -> Result<usize, PkiError> {
    TestPki::new()?.write(&args.out, OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles;
    use fse_formats::pki::{CertStatus, TrustStore};

    #[test]
    fn certificates_are_reproducible_and_need_the_whole_chain() {
        let (a, b) = (TestPki::new().unwrap(), TestPki::new().unwrap());
        assert_eq!(a.root_pem(), b.root_pem());
        let (holder, _) = profiles::default_cps_holder();
        let key = profiles::test_key(&holder.serial)
            .verifying_key()
            .to_bytes();
        let cert = a.cps_certificate(&holder, &key).unwrap();
        assert_eq!(cert, b.cps_certificate(&holder, &key).unwrap());
        let now = 1_795_000_000;

        // Without the intermediate, or without the root, the card is not trusted.
        let mut only_root = TrustStore::new();
        only_root.add_certificates(a.root_pem().as_bytes()).unwrap();
        assert_eq!(
            only_root.check(&cert, &key, now).status,
            CertStatus::Untrusted
        );
        let mut only_ca = TrustStore::new();
        only_ca.add_certificates(a.ca_pem().as_bytes()).unwrap();
        assert_eq!(
            only_ca.check(&cert, &key, now).status,
            CertStatus::Untrusted
        );

        // With both but no CRL: valid, and says revocation was not checked.
        let mut store = only_root.clone();
        store.add_certificates(a.ca_pem().as_bytes()).unwrap();
        let c = store.check(&cert, &key, now);
        assert_eq!(c.status, CertStatus::Valid, "{c:?}");
        assert!(!c.revocation_checked);
        assert!(c.subject.unwrap().contains("MARTIN Claire"));

        // A CRL signed by another CA than the card's issuer is not taken into account.
        let crl = a
            .crl_pem(
                &[],
                std::slice::from_ref(&holder.serial),
                OffsetDateTime::from_unix_timestamp(now).unwrap(),
            )
            .unwrap();
        store.add_crls(crl.as_bytes()).unwrap();
        let c = store.check(&cert, &key, now);
        assert_eq!(c.status, CertStatus::Valid);
        assert!(c.revocation_checked);

        // A flipped bit in the signature is caught; so is a date past notAfter.
        let mut bad = cert.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(store.check(&bad, &key, now).status, CertStatus::Untrusted);
        assert_eq!(
            store.check(&cert, &key, 1_900_000_000).status,
            CertStatus::Expired
        );
    }

    #[test]
    fn insurer_certificates_name_their_code_and_only_the_insurer_ca_makes_them() {
        let pki = TestPki::new().unwrap();
        let mut store = TrustStore::new();
        store.add_certificates(pki.root_pem().as_bytes()).unwrap();
        store.add_certificates(pki.ca_pem().as_bytes()).unwrap();
        let now = 1_795_000_000;
        let cert = pki.insurer_certificate("017510001").unwrap();
        let (code, key) = store.check_insurer(&cert, now).unwrap();
        assert_eq!(code, "017510001");
        assert_eq!(key, insurer_key("017510001").verifying_key().to_bytes());
        assert_ne!(key, insurer_key("017510002").verifying_key().to_bytes());
        // A card certificate chains to the same root but is no insurer's.
        let (holder, _) = profiles::default_cps_holder();
        let card_key = profiles::test_key(&holder.serial)
            .verifying_key()
            .to_bytes();
        let card = pki.cps_certificate(&holder, &card_key).unwrap();
        let err = store.check_insurer(&card, now).unwrap_err();
        assert!(err.contains("not an insurer's"), "{err}");
        // Past its end, or with only the root, it is refused.
        assert!(store.check_insurer(&cert, 2_300_000_000).is_err());
        let mut only_root = TrustStore::new();
        only_root
            .add_certificates(pki.root_pem().as_bytes())
            .unwrap();
        assert!(only_root.check_insurer(&cert, now).is_err());
        // A self-signed certificate naming the same code is nobody's.
        let forged = self_signed_insurer_certificate("017510001", insurer_key("x")).unwrap();
        assert!(store.check_insurer(&forged, now).is_err());
    }
}
