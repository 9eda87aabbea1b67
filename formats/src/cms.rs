//! The lot signature as CMS SignedData (RFC 5652) with Ed25519 (RFC 8419),
//! so that any CMS tool can check a lot: the encapsulated content is the DER
//! lot header, there are no signed attributes, so the signature is the very
//! Ed25519 signature the CPS made over the header; the CPS certificate (and
//! its CA's, when known) travel in `certificates`.

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::der::{DerError, Writer};

/// `id-signedData` 1.2.840.113549.1.7.2.
const OID_SIGNED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02];
/// `id-data` 1.2.840.113549.1.7.1.
const OID_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01];
/// `id-sha512` 2.16.840.1.101.3.4.2.3: the digest algorithm RFC 8419 names with Ed25519.
const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
/// `id-Ed25519` 1.3.101.112.
const OID_ED25519: &[u8] = &[0x2B, 0x65, 0x70];

/// The ContentInfo (DER) of a SignedData over `content`, signed by the holder of `signer_cert`
/// with `signature`; `chain` adds CA certificates. The certificates are sorted as DER requires
/// of a SET OF.
pub fn signed_data(
    content: &[u8],
    signature: &[u8; 64],
    signer_cert: &[u8],
    chain: &[Vec<u8>],
) -> Result<Vec<u8>, DerError> {
    let (_, cert) = X509Certificate::from_der(signer_cert)
        .map_err(|_| DerError::field("signer_cert", "not an X.509 certificate"))?;
    let issuer = cert.tbs_certificate.issuer.as_raw();
    let serial = cert.raw_serial();
    let mut certs: Vec<&[u8]> = std::iter::once(signer_cert)
        .chain(chain.iter().map(Vec::as_slice))
        .collect();
    certs.sort();
    certs.dedup();
    let mut w = Writer::with_capacity(content.len() + 1024);
    w.seq(|w| {
        w.oid(OID_SIGNED_DATA);
        w.constructed(0xA0, |w| {
            w.seq(|w| {
                w.uint(1);
                w.constructed(0x31, |w| w.seq(|w| w.oid(OID_SHA512)));
                w.seq(|w| {
                    w.oid(OID_DATA);
                    w.constructed(0xA0, |w| w.octets(content));
                });
                w.constructed(0xA0, |w| certs.iter().for_each(|c| w.raw(c)));
                w.constructed(0x31, |w| {
                    w.seq(|w| {
                        w.uint(1);
                        w.seq(|w| {
                            w.raw(issuer);
                            w.integer_bytes(serial);
                        });
                        w.seq(|w| w.oid(OID_SHA512));
                        w.seq(|w| w.oid(OID_ED25519));
                        w.octets(signature);
                    });
                });
            });
        });
    });
    Ok(w.finish())
}

/// The certificates a SignedData ContentInfo carries (DER each).
pub fn certificates(content_info: &[u8]) -> Result<Vec<Vec<u8>>, DerError> {
    crate::der::check_structure(content_info)?;
    let bad = || DerError::field("cms", "not a SignedData ContentInfo");
    let top = crate::der::values(content_info)?;
    let (_, _, info) = top.first().ok_or_else(bad)?;
    let info = crate::der::values(info)?;
    let explicit = info.get(1).filter(|v| v.0 == 0xA0).ok_or_else(bad)?;
    let signed = crate::der::values(explicit.2)?;
    let signed = crate::der::values(signed.first().ok_or_else(bad)?.2)?;
    Ok(signed
        .iter()
        .filter(|v| v.0 == 0xA0)
        .flat_map(|v| crate::der::values(v.2).unwrap_or_default())
        .map(|v| v.1.to_vec())
        .collect())
}

/// A PEM rendering (`PKCS7`) of a CMS structure.
pub fn to_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("PKCS7", der.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_wraps_the_der() {
        let pem = to_pem(&[0x30, 0x00]);
        assert!(pem.starts_with("-----BEGIN PKCS7-----"), "{pem}");
        assert!(pem.contains("MAA="), "{pem}");
    }

    #[test]
    fn a_bad_certificate_is_an_error() {
        assert!(signed_data(b"x", &[0; 64], b"not a cert", &[]).is_err());
    }
}
