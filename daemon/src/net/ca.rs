//! The practice CA (rcgen, ECDSA P-256 with ring): `ca.crt` and `ca.key` (0600) in the
//! network directory, made on first use; fsed's server certificate (serverAuth, SAN
//! `fsed.practice` and `network.server_names`), `server.crt` and `server.key` (0600), made
//! again when within [`RENEW_DAYS`] of its end or when its names change; and workstation
//! certificates (clientAuth only, CN the workstation's name) issued from a CSR.

use std::path::Path;

use fsed_client::tls::{fingerprint, pem, SERVER_NAME};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

use super::{read, write_atomic, NetError};

/// The CA's certificate file.
pub const CA_CERT: &str = "ca.crt";
/// The CA's key file (0600).
pub const CA_KEY: &str = "ca.key";
/// The server certificate file.
pub const SERVER_CERT: &str = "server.crt";
/// The server key file (0600).
pub const SERVER_KEY: &str = "server.key";
/// The CA's lifetime, in days (twenty years: it outlives every certificate it issues).
pub const CA_DAYS: i64 = 7305;
/// The server certificate's lifetime, in days.
pub const SERVER_DAYS: i64 = 397;
/// A server certificate this close to its end is made again.
pub const RENEW_DAYS: i64 = 30;
/// How far before now a certificate starts (clocks of the practice a little apart).
const BACKDATE: Duration = Duration::minutes(5);

/// The practice CA: its certificate and what signs with its key.
pub struct Ca {
    /// The CA certificate (DER).
    pub der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate made here, its key and its end.
pub struct Issued {
    /// The certificate (DER).
    pub certificate: CertificateDer<'static>,
    /// Its private key (PKCS#8 DER).
    pub key: PrivateKeyDer<'static>,
    /// Its end, Unix seconds.
    pub not_after: i64,
}

/// A fresh random serial number of 16 bytes, positive.
fn serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f;
    b[0] |= 0x01;
    SerialNumber::from_slice(&b)
}

fn cn(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "fsed practice");
    dn.push(DnType::CommonName, name);
    dn
}

impl Ca {
    /// The CA of `dir`, or a new one written there (key 0600) when there is none.
    pub fn load_or_create(dir: &Path) -> Result<Ca, NetError> {
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        if cert_path.exists() || key_path.exists() {
            let cert = read(&cert_path)?;
            let der = CertificateDer::from_pem_slice(&cert).map_err(|e| NetError::Invalid {
                path: cert_path.clone(),
                reason: format!("no PEM certificate: {e}"),
            })?;
            let key_pem = zeroize::Zeroizing::new(read(&key_path)?);
            let key = std::str::from_utf8(&key_pem)
                .ok()
                .and_then(|k| KeyPair::from_pem(k).ok())
                .ok_or_else(|| NetError::Invalid {
                    path: key_path.clone(),
                    reason: "no PEM private key".into(),
                })?;
            let issuer = Issuer::from_ca_cert_der(&der, key)?;
            return Ok(Ca { der, issuer });
        }
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = cn("fsed practice CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::days(CA_DAYS);
        params.serial_number = Some(serial());
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
        write_atomic(&key_path, key_pem.as_bytes(), 0o600)?;
        write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
        tracing::info!(fingerprint = %fingerprint(cert.der()), dir = %dir.display(), "practice CA made");
        Ok(Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate's fingerprint.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.der)
    }

    /// A server certificate for `fsed.practice` and `names`, valid from now for
    /// [`SERVER_DAYS`].
    pub fn issue_server(&self, names: &[String]) -> Result<Issued, NetError> {
        let now = OffsetDateTime::now_utc();
        let mut all = vec![SERVER_NAME.to_string()];
        all.extend(names.iter().cloned());
        let mut params = CertificateParams::new(all)?;
        params.distinguished_name = cn(SERVER_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::days(SERVER_DAYS);
        params.serial_number = Some(serial());
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            certificate: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            not_after: params.not_after.unix_timestamp(),
        })
    }

    /// A workstation certificate for `name` from `csr` (DER; its signature checked, its
    /// public key kept, everything else it asks for ignored), valid from `not_before` to
    /// `not_after` (Unix seconds), clientAuth only.
    pub fn issue_workstation(
        &self,
        csr: &[u8],
        name: &str,
        not_before: i64,
        not_after: i64,
    ) -> Result<CertificateDer<'static>, NetError> {
        let der = CertificateSigningRequestDer::from(csr.to_vec());
        let mut request = CertificateSigningRequestParams::from_der(&der)
            .map_err(|e| NetError::Certificate(format!("the CSR: {e}")))?;
        let at = |t: i64| {
            OffsetDateTime::from_unix_timestamp(t)
                .map_err(|e| NetError::Certificate(format!("date {t}: {e}")))
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = cn(name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = at(not_before)?;
        params.not_after = at(not_after)?;
        params.serial_number = Some(serial());
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names = Vec::<SanType>::new();
        request.params = params;
        Ok(request.signed_by(&self.issuer)?.der().clone())
    }
}

/// fsed's server certificate in `dir`: the one there when it is of `ca`, carries `names` and
/// ends more than [`RENEW_DAYS`] from now; else a new one, written (key 0600).
pub fn server_certificate(dir: &Path, ca: &Ca, names: &[String]) -> Result<Issued, NetError> {
    if let Some(kept) = current_server_certificate(dir, ca, names) {
        return Ok(kept);
    }
    let issued = ca.issue_server(names)?;
    let key = zeroize::Zeroizing::new(pem("PRIVATE KEY", issued.key.secret_der()));
    write_atomic(&dir.join(SERVER_KEY), key.as_bytes(), 0o600)?;
    write_atomic(
        &dir.join(SERVER_CERT),
        pem("CERTIFICATE", &issued.certificate).as_bytes(),
        0o644,
    )?;
    tracing::info!(
        fingerprint = %fingerprint(&issued.certificate),
        not_after = %super::rfc3339(issued.not_after),
        "server certificate made"
    );
    Ok(issued)
}

/// The server certificate of `dir`, if it can be kept.
fn current_server_certificate(dir: &Path, ca: &Ca, names: &[String]) -> Option<Issued> {
    let cert = CertificateDer::from_pem_slice(&read(&dir.join(SERVER_CERT)).ok()?).ok()?;
    let key_pem = zeroize::Zeroizing::new(read(&dir.join(SERVER_KEY)).ok()?);
    let key = PrivateKeyDer::from_pem_slice(&key_pem).ok()?;
    let (_, x509) = x509_parser::parse_x509_certificate(&cert).ok()?;
    let not_after = x509.validity().not_after.timestamp();
    if not_after - chrono::Utc::now().timestamp() < RENEW_DAYS * 86_400 {
        return None;
    }
    let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca.der).ok()?;
    if x509.verify_signature(Some(ca_x509.public_key())).is_err() {
        return None;
    }
    let mut want: Vec<String> = vec![SERVER_NAME.to_string()];
    want.extend(names.iter().cloned());
    want.sort();
    let mut have: Vec<String> = x509
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(ip) => ip_text(ip),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    have.sort();
    (have == want).then_some(Issued {
        certificate: cert,
        key,
        not_after,
    })
}

/// An IP address SAN's bytes as text.
fn ip_text(b: &[u8]) -> Option<String> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b)
            .ok()
            .map(|a| std::net::IpAddr::from(a).to_string()),
        16 => <[u8; 16]>::try_from(b)
            .ok()
            .map(|a| std::net::IpAddr::from(a).to_string()),
        _ => None,
    }
}

/// The end of certificate `der` (Unix seconds) and its serial (hex), when it parses.
pub fn dates_and_serial(der: &[u8]) -> Option<(i64, String)> {
    let (_, x509) = x509_parser::parse_x509_certificate(der).ok()?;
    Some((
        x509.validity().not_after.timestamp(),
        fsed_client::tls::hex(x509.raw_serial()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_ca_is_made_once_and_its_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let mode = |f: &str| {
            std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(CA_KEY), 0o600);
        let again = Ca::load_or_create(dir.path()).unwrap();
        assert_eq!(again.der, ca.der, "loaded, not made again");
        let (_, x509) = x509_parser::parse_x509_certificate(&ca.der).unwrap();
        assert!(x509.is_ca());
    }

    #[test]
    fn the_server_certificate_is_kept_until_its_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let names = vec!["fsed.lan".to_string(), "192.168.1.10".to_string()];
        let first = server_certificate(dir.path(), &ca, &names).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join(SERVER_KEY))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let kept = server_certificate(dir.path(), &ca, &names).unwrap();
        assert_eq!(kept.certificate, first.certificate);
        // 397 days from now, to within a minute of this test's run.
        let expected = chrono::Utc::now().timestamp() + SERVER_DAYS * 86_400;
        assert!((first.not_after - expected).abs() < 60);
        let renamed = server_certificate(dir.path(), &ca, &["other.lan".into()]).unwrap();
        assert_ne!(renamed.certificate, first.certificate);
    }

    #[test]
    fn a_workstation_certificate_keeps_only_the_csr_s_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut asked = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        asked.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = asked.serialize_request(&key).unwrap();
        let der = ca
            .issue_workstation(csr.der(), "reception", 1_700_000_000, 1_800_000_000)
            .unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!x509.is_ca());
        assert_eq!(x509.validity().not_after.timestamp(), 1_800_000_000);
        assert!(x509.subject_alternative_name().unwrap().is_none());
        let cn = x509.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "reception");
        let eku = x509.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(
            x509.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        // A CSR whose signature does not hold is refused.
        let mut bad = csr.der().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(ca.issue_workstation(&bad, "x", 0, 1).is_err());
    }
}
