//! The client's side of fsed's network API: an enrolled workstation's identity and the
//! mutual TLS 1.3 configuration built from it (`daemon/API.md`, "Network API").
//!
//! An identity is a directory written by `fsectl enroll` and read by clients and by fsed's
//! links to other fseds:
//!
//! | file | content |
//! |------|---------|
//! | `ca.crt` | the practice CA the workstation enrolled with (PEM) |
//! | `client.crt` | the workstation's certificate (PEM) |
//! | `client.key` | its private key (PEM, PKCS#8, mode 0600) |
//! | `enrollment.json` | `{"name": …, "host": …, "fingerprint": …}` |
//!
//! The server is verified against that CA only, under the name [`SERVER_NAME`], which every
//! fsed's server certificate carries whatever its address.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The DNS name every fsed's server certificate carries, under which clients verify it.
pub const SERVER_NAME: &str = "fsed.practice";

/// The CA file of an identity directory.
pub const CA_FILE: &str = "ca.crt";
/// The certificate file of an identity directory.
pub const CERTIFICATE_FILE: &str = "client.crt";
/// The private key file of an identity directory (mode 0600).
pub const KEY_FILE: &str = "client.key";
/// The enrollment record of an identity directory.
pub const ENROLLMENT_FILE: &str = "enrollment.json";

/// Why an identity could not be loaded or saved, or a TLS configuration built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the identity could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file of the identity is not what it should hold.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration (a key that does not fit its certificate…).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The enrollment record (`enrollment.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// The workstation's name, as fsed knows it (its certificate's CN).
    pub name: String,
    /// The fsed it enrolled with (`host:port` of its network API).
    pub host: String,
    /// The fingerprint of the workstation's certificate ([`fingerprint`]).
    pub fingerprint: String,
}

/// An enrolled workstation's identity: the practice CA, its certificate and key, its name and
/// the fsed it enrolled with.
#[derive(Debug)]
pub struct Identity {
    /// The practice CA's certificate: the only root the server is verified against.
    pub ca: CertificateDer<'static>,
    /// The workstation's certificate, issued by that CA.
    pub certificate: CertificateDer<'static>,
    /// The certificate's private key. Never logged (rustls' `Debug` of it shows no bytes).
    pub key: PrivateKeyDer<'static>,
    /// The workstation's name.
    pub name: String,
    /// The fsed it enrolled with (`host:port`).
    pub host: String,
}

/// The SHA-256 of a certificate's DER, in lowercase hex: how fsed and its log name a
/// certificate.
pub fn fingerprint(certificate: &[u8]) -> String {
    hex(&Sha256::digest(certificate))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The one certificate of a PEM file.
fn certificate_of(path: &Path) -> Result<CertificateDer<'static>, Error> {
    let pem = read(path)?;
    CertificateDer::from_pem_slice(&pem)
        .map_err(|e| invalid(path, format!("no PEM certificate: {e}")))
}

/// Writes `bytes` to `dir/name` atomically (a temporary file in `dir`, synced, then renamed
/// over it) with `mode`.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let file_error = |source| Error::File {
        path: path.clone(),
        source,
    };
    // A stale temporary file of an interrupted save may have another mode: start anew.
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(file_error)?;
    f.write_all(bytes).map_err(file_error)?;
    f.sync_all().map_err(file_error)?;
    drop(f);
    fs::rename(&tmp, &path).map_err(file_error)?;
    Ok(())
}

impl Identity {
    /// Loads the identity in `dir` (the layout of the module's documentation).
    pub fn load(dir: impl AsRef<Path>) -> Result<Identity, Error> {
        let dir = dir.as_ref();
        let ca = certificate_of(&dir.join(CA_FILE))?;
        let certificate = certificate_of(&dir.join(CERTIFICATE_FILE))?;
        let key_path = dir.join(KEY_FILE);
        let key_pem = zeroize::Zeroizing::new(read(&key_path)?);
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| invalid(&key_path, format!("no PEM private key: {e}")))?;
        let enrollment_path = dir.join(ENROLLMENT_FILE);
        let enrollment: Enrollment = serde_json::from_slice(&read(&enrollment_path)?)
            .map_err(|e| invalid(&enrollment_path, e.to_string()))?;
        let identity = Identity {
            ca,
            certificate,
            key,
            name: enrollment.name,
            host: enrollment.host,
        };
        if identity.fingerprint() != enrollment.fingerprint {
            return Err(invalid(
                &enrollment_path,
                format!(
                    "fingerprint {} is not that of {CERTIFICATE_FILE} ({})",
                    enrollment.fingerprint,
                    identity.fingerprint()
                ),
            ));
        }
        Ok(identity)
    }

    /// Saves the identity in `dir` (created if missing, mode 0700): each file written
    /// atomically, the key with mode 0600.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), Error> {
        let dir = dir.as_ref();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| Error::File {
                path: dir.to_path_buf(),
                source,
            })?;
        let key = zeroize::Zeroizing::new(pem("PRIVATE KEY", self.key.secret_der()));
        write_atomic(dir, KEY_FILE, key.as_bytes(), 0o600)?;
        write_atomic(dir, CA_FILE, pem("CERTIFICATE", &self.ca).as_bytes(), 0o644)?;
        write_atomic(
            dir,
            CERTIFICATE_FILE,
            pem("CERTIFICATE", &self.certificate).as_bytes(),
            0o644,
        )?;
        let enrollment = Enrollment {
            name: self.name.clone(),
            host: self.host.clone(),
            fingerprint: self.fingerprint(),
        };
        let mut json = serde_json::to_vec_pretty(&enrollment).map_err(|e| Error::Invalid {
            path: dir.join(ENROLLMENT_FILE),
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        write_atomic(dir, ENROLLMENT_FILE, &json, 0o644)
    }

    /// The fingerprint of the workstation's certificate.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.certificate)
    }

    /// The fingerprint of the CA's certificate.
    pub fn ca_fingerprint(&self) -> String {
        fingerprint(&self.ca)
    }
}

/// `der` as a PEM block labelled `label`, lines of 64 characters.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    for chunk in b64.as_bytes().chunks(64) {
        // base64's alphabet is ASCII: every chunk is UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The ring provider (never installed as the process default), TLS 1.3 only.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration of `identity`: TLS 1.3 only, the ring provider, the identity's
/// CA as the only root, its certificate and key as client authentication.
pub fn client_config(identity: &Identity) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(identity.ca.clone())?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![identity.certificate.clone()], identity.key.clone_key())?;
    Ok(Arc::new(config))
}

/// The name the server is verified under ([`SERVER_NAME`]).
pub fn server_name() -> rustls::pki_types::ServerName<'static> {
    // SERVER_NAME is a valid DNS name (a constant of this module).
    rustls::pki_types::ServerName::DnsName(
        rustls::pki_types::DnsName::try_from(SERVER_NAME)
            .map(|n| n.to_owned())
            .unwrap_or_else(|_| unreachable!("fsed.practice is a DNS name")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Client, Timeouts};
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use serde_json::{json, Value};
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    /// A practice CA made for a test.
    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        der: CertificateDer<'static>,
    }

    fn ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().clone();
        Ca { params, key, der }
    }

    /// A certificate issued by `ca` for `names` with `eku`, and its key.
    fn issue(
        ca: &Ca,
        cn: &str,
        names: &[&str],
        eku: ExtendedKeyUsagePurpose,
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![eku];
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&ca.params, &ca.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
    }

    fn identity(ca: &Ca, name: &str) -> Identity {
        let (certificate, key) = issue(ca, name, &[], ExtendedKeyUsagePurpose::ClientAuth);
        Identity {
            ca: ca.der.clone(),
            certificate,
            key,
            name: name.into(),
            host: "127.0.0.1:1".into(),
        }
    }

    /// A TLS 1.3 server with a certificate of `server_ca` that requires a client certificate
    /// of `client_ca`; it answers one JSON-RPC request per line with the client
    /// certificate's fingerprint. Its address.
    fn server(server_ca: &Ca, client_ca: &Ca) -> String {
        let (cert, key) = issue(
            server_ca,
            "fsed",
            &[SERVER_NAME],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let mut roots = rustls::RootCertStore::empty();
        roots.add(client_ca.der.clone()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                .build()
                .unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(vec![cert], key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let config = config.clone();
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, tcp.unwrap());
                    let mut line = String::new();
                    loop {
                        line.clear();
                        let mut reader = BufReader::new(&mut tls);
                        match reader.read_line(&mut line) {
                            Ok(n) if n > 0 => {}
                            _ => return,
                        }
                        drop(reader);
                        let request: Value = serde_json::from_str(&line).unwrap();
                        let peer = tls.conn.peer_certificates().unwrap()[0].clone();
                        let answer = json!({"jsonrpc": "2.0", "id": request["id"],
                            "result": {"fingerprint": fingerprint(&peer)}});
                        tls.write_all(format!("{answer}\n").as_bytes()).unwrap();
                        tls.flush().unwrap();
                    }
                });
            }
        });
        address
    }

    #[test]
    fn a_call_over_mutual_tls_reaches_the_server_as_the_identity() {
        let practice = ca("practice");
        let address = server(&practice, &practice);
        let me = identity(&practice, "reception");
        let mut c = Client::connect_tls(&address, &me).unwrap();
        assert!(c.is_tls());
        c.stream()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let r = c.call("system.version", json!({})).unwrap();
        assert_eq!(r["fingerprint"], json!(me.fingerprint()));
        // A second call on the same connection: ids go on (2), the stream stays usable.
        let r = c.call("queue.stats", json!({})).unwrap();
        assert_eq!(r["fingerprint"], json!(me.fingerprint()));
    }

    #[test]
    fn a_server_of_another_ca_is_refused_at_the_handshake() {
        let practice = ca("practice");
        let other = ca("elsewhere");
        let address = server(&other, &practice);
        let me = identity(&practice, "reception");
        let timeouts = Timeouts {
            connect: Duration::from_secs(10),
            read: Some(Duration::from_secs(10)),
        };
        match Client::connect_tls_with(&address, &me, timeouts) {
            Err(crate::Error::Handshake { reason, .. }) => {
                assert!(reason.contains("UnknownIssuer"), "{reason}")
            }
            Err(e) => panic!("not a handshake error: {e}"),
            Ok(_) => panic!("a server of another CA was trusted"),
        }
    }

    #[test]
    fn a_client_of_another_ca_is_refused_by_the_server() {
        let practice = ca("practice");
        let other = ca("elsewhere");
        let address = server(&practice, &practice);
        // Our certificate is of another CA; the server is of ours, so our side of the
        // handshake ends, and the server's refusal comes on the first read.
        let mut me = identity(&other, "intruder");
        me.ca = practice.der.clone();
        let outcome = Client::connect_tls(&address, &me).and_then(|mut c| {
            c.stream()
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            c.call("system.version", json!({}))
        });
        assert!(outcome.is_err(), "{outcome:?}");
    }

    #[test]
    fn nothing_listening_names_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let practice = ca("practice");
        let e = Client::connect_tls(&address, &identity(&practice, "r"))
            .err()
            .unwrap();
        assert!(matches!(e, crate::Error::ConnectTcp { .. }), "{e}");
        assert!(e.to_string().starts_with(&format!("{address}: ")), "{e}");
    }

    #[test]
    fn an_identity_saved_loads_back_with_its_key_private() {
        let practice = ca("practice");
        let me = identity(&practice, "doctor-1");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        me.save(&path).unwrap();
        let mode = |f: &str| fs::metadata(path.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(CA_FILE), 0o644);
        let back = Identity::load(&path).unwrap();
        assert_eq!(back.ca, me.ca);
        assert_eq!(back.certificate, me.certificate);
        assert_eq!(back.key.secret_der(), me.key.secret_der());
        assert_eq!(
            (back.name.as_str(), back.host.as_str()),
            ("doctor-1", "127.0.0.1:1")
        );
        let record: Enrollment =
            serde_json::from_slice(&fs::read(path.join(ENROLLMENT_FILE)).unwrap()).unwrap();
        assert_eq!(record.fingerprint, me.fingerprint());
        // Saving again over it works (atomic replacement), and no temporary file is left.
        me.save(&path).unwrap();
        let names: Vec<_> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
    }

    #[test]
    fn an_identity_whose_record_names_another_certificate_is_refused() {
        let practice = ca("practice");
        let dir = tempfile::tempdir().unwrap();
        identity(&practice, "a").save(dir.path()).unwrap();
        let record = Enrollment {
            name: "a".into(),
            host: "h:1".into(),
            fingerprint: "00".repeat(32),
        };
        fs::write(
            dir.path().join(ENROLLMENT_FILE),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        let e = Identity::load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("is not that of client.crt"), "{e}");
        let e = Identity::load(dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("ca.crt"), "{e}");
    }

    #[test]
    fn fingerprint_is_sha256_in_lowercase_hex() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn pem_is_base64_in_64_character_lines() {
        // RFC 4648 §10: "f" → "Zg==", "fo" → "Zm8=", "foo" → "Zm9v".
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        // 48 bytes → 64 characters: one full line; 49 → a second line of "AA==".
        let p = pem("X", &[0u8; 49]);
        let lines: Vec<_> = p.lines().collect();
        assert_eq!(lines.len(), 4, "{p}");
        assert_eq!(lines[1], "A".repeat(64));
        assert_eq!(lines[2], "AA==");
        assert_eq!(
            CertificateDer::from_pem_slice(pem("CERTIFICATE", b"xyz").as_bytes())
                .unwrap()
                .as_ref(),
            b"xyz"
        );
    }
}
