//! The Vitale-app side of the test PKI: the Vitale-app CA (under the test root, with the
//! Vitale-app extended key usage [`fse_formats::pki::OID_VITALE_APP`] so that only it makes
//! apps), the certificate of each app (subject `serialNumber` = the app serial, the same
//! usage), and a CA nobody trusts for tests of refusals.

use rcgen::{CertificateParams, CertifiedIssuer, DnType, KeyUsagePurpose, SerialNumber};

use crate::pki::{
    ca_params, certificate_serial, date, key_id, name, vitale_app_usage, CaKey, CardKey, PkiError,
    TestPki, SERIAL_NUMBER_ATTRIBUTE,
};

/// The Vitale-app CA, signed by `root`.
pub(crate) fn app_ca(
    root: &CertifiedIssuer<'static, CaKey>,
) -> Result<CertifiedIssuer<'static, CaKey>, PkiError> {
    let key = CaKey::derive("vitale-app");
    let mut params = ca_params("fsed TEST CA Appli carte Vitale", &key, Some(0), "20391231")?;
    params.custom_extensions.push(vitale_app_usage());
    Ok(CertifiedIssuer::signed_by(params, key, root)?)
}

/// The certificate fields of the app `app_serial` holding `key`.
fn app_params(app_serial: &str, key: &CardKey) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(
        &format!("Appli carte Vitale {app_serial}"),
        &[(
            DnType::CustomDnType(SERIAL_NUMBER_ATTRIBUTE.to_vec()),
            app_serial.to_string(),
        )],
    );
    p.not_before = date("20240101", false)?;
    p.not_after = date("20391231", true)?;
    p.serial_number = Some(SerialNumber::from_slice(&certificate_serial(&format!(
        "app:{app_serial}"
    ))));
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.custom_extensions.push(vitale_app_usage());
    p.key_identifier_method = key_id(key);
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

impl TestPki {
    /// The certificate (DER) of the Vitale app `app_serial` for `public_key`, issued by the
    /// Vitale-app CA, valid 2024–2039.
    pub fn app_certificate(
        &self,
        app_serial: &str,
        public_key: &[u8; 32],
    ) -> Result<Vec<u8>, PkiError> {
        let key = CardKey(*public_key);
        Ok(app_params(app_serial, &key)?
            .signed_by(&key, &self.app_ca)?
            .der()
            .to_vec())
    }
}

/// The same certificate as [`TestPki::app_certificate`] but issued by a CA of its own that no
/// trust store holds (same names, same usage): what a forger can make.
pub fn unknown_ca_app_certificate(
    app_serial: &str,
    public_key: &[u8; 32],
) -> Result<Vec<u8>, PkiError> {
    let key = CaKey::derive("unknown-vitale-app");
    let mut params = ca_params("fsed TEST CA Appli carte Vitale", &key, Some(0), "20391231")?;
    params.custom_extensions.push(vitale_app_usage());
    let rogue = CertifiedIssuer::self_signed(params, key)?;
    let app = CardKey(*public_key);
    Ok(app_params(app_serial, &app)?
        .signed_by(&app, &rogue)?
        .der()
        .to_vec())
}
