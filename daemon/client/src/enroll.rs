//! Enrollment of a workstation with a one-time pairing code (`daemon/API.md`, "Enrollment"):
//! the code's form, the proofs both sides compute with it, and the workstation's side of the
//! exchange ([`enroll`]), which makes the key here, sends a CSR and trusts the CA answered
//! only when the answer's proof holds.
//!
//! A code is 80 random bits written as 16 characters of Crockford's base32 in groups of four
//! (`K7QF-2MXD-9TPA-WR4E`). Its key form, the HMAC key of both proofs, is the 16 characters,
//! uppercase, without dashes ([`normalize_code`]; `O` reads as `0`, `I` and `L` as `1`).
//! The request's proof is hex(HMAC-SHA256(code, CSR DER)); the answer's is
//! hex(HMAC-SHA256(code, CA DER || certificate DER)). The enrollment listener's certificate
//! cannot be checked yet (the workstation does not know the CA): a man in the middle without
//! the code can make neither proof.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::{json, Value};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::tls::{self, Identity};
use crate::{Error, PeerError};

/// Crockford's base32 alphabet: no I, L, O, U.
pub const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters of a code (16 × 5 bits = 80 bits).
pub const CODE_CHARS: usize = 16;

/// A new random code in its key form (16 characters).
pub fn new_code(random: [u8; 10]) -> Zeroizing<String> {
    // 10 bytes = 80 bits = 16 groups of 5 bits, most significant first.
    let mut bits: u128 = 0;
    for b in random {
        bits = (bits << 8) | u128::from(b);
    }
    let mut s = Zeroizing::new(String::with_capacity(CODE_CHARS));
    for i in (0..CODE_CHARS).rev() {
        s.push(char::from(CODE_ALPHABET[((bits >> (5 * i)) & 31) as usize]));
    }
    s
}

/// A code in its key form as shown to people: groups of four joined by dashes.
pub fn display_code(code: &str) -> String {
    code.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// A code as typed (any case, dashes and spaces, `O` for `0`, `I`/`L` for `1`) in its key
/// form; `None` when it is not 16 characters of the alphabet.
pub fn normalize_code(typed: &str) -> Option<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::with_capacity(CODE_CHARS));
    for c in typed.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !CODE_ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.len() == CODE_CHARS).then_some(out)
}

/// hex(HMAC-SHA256(key = `code` in its key form, message = the `parts` one after the other)).
pub fn proof(code: &str, parts: &[&[u8]]) -> String {
    tls::hex(&mac(code, parts).finalize().into_bytes())
}

/// Whether `hex_proof` is the proof of `parts` under `code` (compared in constant time).
pub fn proof_holds(code: &str, parts: &[&[u8]], hex_proof: &str) -> bool {
    let Some(bytes) = unhex(hex_proof) else {
        return false;
    };
    mac(code, parts).verify_slice(&bytes).is_ok()
}

fn mac(code: &str, parts: &[&[u8]]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(code.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    for p in parts {
        m.update(p);
    }
    m
}

/// Bytes of a hex string; `None` when it is not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Accepts the enrollment listener's certificate without checking it (the CA is not known
/// yet), while checking the handshake's signatures: the answer's proof decides.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What [`enroll`] needs.
pub struct Request<'a> {
    /// The enrollment listener (`host:port`, as `fsectl workstations pair` shows it).
    pub enroll_address: &'a str,
    /// The fsed's network API (`host:port`), recorded in the identity when the answer does
    /// not give the API's port (`api_port`: then the enrollment host with that port).
    pub host: &'a str,
    /// The name the code was made for.
    pub name: &'a str,
    /// The code, as typed.
    pub code: &'a str,
    /// How long connecting and the exchange may take.
    pub timeout: Duration,
}

fn refused(reason: impl Into<String>) -> Error {
    Error::Unreadable {
        reason: reason.into(),
    }
}

/// Enrolls this workstation: makes its key (ECDSA P-256), sends the CSR with its proof,
/// checks the answer's proof and returns the identity (not saved: see [`Identity::save`]).
pub fn enroll(r: &Request<'_>) -> Result<Identity, Error> {
    let code = normalize_code(r.code).ok_or_else(|| {
        refused(
            "the code is 16 characters of 0-9 and A-Z (not I, L, O, U), like K7QF-2MXD-9TPA-WR4E",
        )
    })?;
    let key = rcgen::KeyPair::generate().map_err(|e| refused(format!("key: {e}")))?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, r.name);
    let csr = params
        .serialize_request(&key)
        .map_err(|e| refused(format!("CSR: {e}")))?;
    let csr_pem = csr.pem().map_err(|e| refused(format!("CSR: {e}")))?;
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "workstations.enroll", "params": {
        "name": r.name, "csr": csr_pem, "proof": proof(&code, &[csr.der()]),
    }});
    let answer = exchange(r, &request)?;
    if let Some(error) = answer.get("error") {
        return Err(match PeerError::from_value(error) {
            Some(p) => Error::Peer(p),
            None => refused(format!("enrollment error: {error}")),
        });
    }
    let result = &answer["result"];
    let pem_of = |member: &str| -> Result<CertificateDer<'static>, Error> {
        let text = result[member]
            .as_str()
            .ok_or_else(|| refused(format!("the answer has no {member}")))?;
        CertificateDer::from_pem_slice(text.as_bytes())
            .map_err(|e| refused(format!("the answer's {member}: {e}")))
    };
    let (ca, certificate) = (pem_of("ca")?, pem_of("certificate")?);
    let answered = result["proof"].as_str().unwrap_or_default();
    if !proof_holds(&code, &[&ca, &certificate], answered) {
        return Err(refused(
            "the answer's proof does not hold: not the fsed that showed the code (or the code is wrong)",
        ));
    }
    let host = match (
        result["api_port"].as_u64(),
        r.enroll_address.rsplit_once(':'),
    ) {
        (Some(port), Some((h, _))) => format!("{h}:{port}"),
        _ => r.host.to_string(),
    };
    Ok(Identity {
        ca,
        certificate,
        key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        name: r.name.to_string(),
        host,
    })
}

/// Sends `request` to the enrollment listener and reads its one answer line.
fn exchange(r: &Request<'_>, request: &Value) -> Result<Value, Error> {
    let address = r.enroll_address;
    let connect_error = |source| Error::ConnectTcp {
        address: address.to_string(),
        source,
    };
    let a = address
        .to_socket_addrs()
        .map_err(connect_error)?
        .next()
        .ok_or_else(|| {
            connect_error(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the address resolves to nothing",
            ))
        })?;
    let tcp = TcpStream::connect_timeout(&a, r.timeout).map_err(connect_error)?;
    tcp.set_read_timeout(Some(r.timeout))
        .map_err(connect_error)?;
    tcp.set_write_timeout(Some(r.timeout))
        .map_err(connect_error)?;
    let provider = tls::provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls::Error::from)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), tls::server_name()).map_err(|e| {
            Error::Handshake {
                address: address.to_string(),
                reason: e.to_string(),
            }
        })?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let mut line = serde_json::to_vec(request).map_err(Error::Encode)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    stream.flush()?;
    let mut answer = String::new();
    BufReader::new((&mut stream).take(1 << 20)).read_line(&mut answer)?;
    if answer.is_empty() {
        return Err(Error::Closed);
    }
    serde_json::from_str(&answer).map_err(|e| refused(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_16_characters_of_the_alphabet_in_groups_of_four() {
        // 80 bits of zero are 16 zeros; all ones are 16 'Z' (31, the last character).
        assert_eq!(new_code([0; 10]).as_str(), "0000000000000000");
        assert_eq!(new_code([0xff; 10]).as_str(), "ZZZZZZZZZZZZZZZZ");
        // 0x08 = 00001000: the first 5 bits 00001 → '1', the next 5 bits 000 00 → '0'.
        assert_eq!(&new_code([0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0])[..2], "10");
        assert_eq!(display_code("K7QF2MXD9TPAWR4E"), "K7QF-2MXD-9TPA-WR4E");
        assert_eq!(
            normalize_code("k7qf-2mxd 9tpa-wr4e").unwrap().as_str(),
            "K7QF2MXD9TPAWR4E"
        );
        assert_eq!(
            normalize_code("O1IL-0000-0000-0000").unwrap().as_str(),
            "0111000000000000"
        );
        assert!(
            normalize_code("K7QF-2MXD-9TPA-WR4").is_none(),
            "15 characters"
        );
        assert!(
            normalize_code("K7QF-2MXD-9TPA-WR4U").is_none(),
            "U is not in it"
        );
    }

    #[test]
    fn proofs_are_hmac_sha256_and_hold_only_for_their_code() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            proof("Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let p = proof("K7QF2MXD9TPAWR4E", &[b"ca", b"cert"]);
        assert!(proof_holds("K7QF2MXD9TPAWR4E", &[b"cacert"], &p));
        assert!(!proof_holds("K7QF2MXD9TPAWR4F", &[b"cacert"], &p));
        assert!(!proof_holds("K7QF2MXD9TPAWR4E", &[b"cacert"], "zz"));
    }
}
