//! Pairing codes and the enrollment listener. `workstations.pair` makes a one-time code for a
//! workstation's name (80 bits, [`fsed_client::enroll`] for its form and proofs) and opens
//! the enrollment listener (TLS 1.3, server authentication only) while a code is pending. The
//! listener serves one request line per connection, `workstations.enroll {name, csr, proof}`,
//! and answers `{certificate, ca, proof}`. A code is consumed by its first success; after
//! [`MAX_BAD_PROOFS`] bad proofs every pending code is dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fse_formats::api::{self, ErrorObject};
use fsed_client::enroll::{display_code, new_code, proof, proof_holds};
use fsed_client::tls::{fingerprint, pem};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateSigningRequestDer;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;
use zeroize::Zeroizing;

use super::{lock, rfc3339, NetError, Network};
use crate::api::{Id, Reply};
use crate::shutdown::Shutdown;

/// How long a code lasts by default, in seconds.
pub const DEFAULT_VALID_SECS: u64 = 600;
/// How long a code may last at most, in seconds (a day).
pub const MAX_VALID_SECS: u64 = 86_400;
/// Bad proofs after which every pending code is dropped.
pub const MAX_BAD_PROOFS: u32 = 5;
/// Longest enrollment request line, in bytes.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long a connection of the enrollment listener may take for its handshake and request.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A code waiting for its workstation.
struct Pending {
    code: Zeroizing<String>,
    name: String,
    expires_at: i64,
}

/// The pending codes and the enrollment listener's state.
#[derive(Default)]
pub struct Enrollment {
    state: Mutex<State>,
    /// Wakes the listener when the codes change.
    changed: Notify,
}

#[derive(Default)]
struct State {
    pending: Vec<Pending>,
    bad_proofs: u32,
    /// The enrollment listener's address, while it runs.
    listening: Option<SocketAddr>,
}

/// What `workstations.pair` answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Paired {
    /// The code, in groups of four.
    pub code: String,
    /// When it expires, RFC 3339.
    pub expires_at: String,
    /// Where the workstation enrolls (`fsectl enroll --host`).
    pub enroll_address: String,
    /// SHA-256 of the practice CA's certificate, hex: the workstation may compare it.
    pub ca_fingerprint: String,
}

/// Why a code could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    /// Neither `network.enroll_listen` nor `network.listen` is set.
    #[error("no enrollment address: set network.listen (or network.enroll_listen)")]
    NoAddress,
    /// The name cannot be a workstation's.
    #[error("{0}")]
    Name(String),
    /// The CA, the certificate or the listener failed.
    #[error("{0}")]
    Net(#[from] NetError),
}

impl Enrollment {
    /// Pending codes (not yet expired at `now`).
    pub fn pending(&self, now: i64) -> usize {
        let mut s = lock(&self.state);
        s.pending.retain(|p| p.expires_at > now);
        s.pending.len()
    }
}

/// Makes a code for `name`, valid `valid_secs`, and opens the enrollment listener if it is
/// not open. A code made earlier for the same name is replaced.
pub fn pair(net: &Arc<Network>, name: &str, valid_secs: u64) -> Result<Paired, PairError> {
    crate::config::workstation_name_problem(name).map_err(PairError::Name)?;
    let address = net.settings.enroll_address().ok_or(PairError::NoAddress)?;
    let ca = net.ca()?;
    let now = chrono::Utc::now().timestamp();
    let code = new_code(rand::random());
    let expires_at = now.saturating_add(i64::try_from(valid_secs).unwrap_or(i64::MAX));
    let mut s = lock(&net.enroll.state);
    let bound = match s.listening {
        Some(a) => a,
        None => {
            let config = super::server::enroll_config(net)?;
            let std = std::net::TcpListener::bind(address)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| NetError::Bind { address, source })?;
            let bound = std
                .local_addr()
                .map_err(|source| NetError::Bind { address, source })?;
            let listener = tokio::net::TcpListener::from_std(std)
                .map_err(|source| NetError::Bind { address, source })?;
            tracing::info!(address = %bound, "enrollment listener open");
            tokio::spawn(listen(Arc::clone(net), listener, config, net.stopping()));
            s.listening = Some(bound);
            bound
        }
    };
    s.pending.retain(|p| p.name != name && p.expires_at > now);
    let shown = display_code(&code);
    s.pending.push(Pending {
        code,
        name: name.to_string(),
        expires_at,
    });
    drop(s);
    net.enroll.changed.notify_one();
    tracing::info!(workstation = name, expires_at = %rfc3339(expires_at), "pairing code made");
    Ok(Paired {
        code: shown,
        expires_at: rfc3339(expires_at),
        enroll_address: bound.to_string(),
        ca_fingerprint: ca.fingerprint(),
    })
}

/// The enrollment listener: serves connections while a code is pending, then closes.
async fn listen(
    net: Arc<Network>,
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    mut shutdown: Shutdown,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let next_expiry = {
            let now = chrono::Utc::now().timestamp();
            let mut s = lock(&net.enroll.state);
            s.pending.retain(|p| p.expires_at > now);
            match s.pending.iter().map(|p| p.expires_at).min() {
                Some(t) => t - now,
                None => {
                    s.listening = None;
                    tracing::info!("enrollment listener closed: no code pending");
                    return;
                }
            }
        };
        let wait = Duration::from_secs(u64::try_from(next_expiry).unwrap_or(0).max(1));
        tokio::select! {
            _ = shutdown.wait() => {
                lock(&net.enroll.state).listening = None;
                return;
            }
            () = tokio::time::sleep(wait) => {}
            () = net.enroll.changed.notified() => {}
            accepted = listener.accept() => {
                if let Ok((tcp, peer)) = accepted {
                    let (net, acceptor) = (Arc::clone(&net), acceptor.clone());
                    tokio::spawn(async move {
                        let served = tokio::time::timeout(EXCHANGE_TIMEOUT, serve(&net, acceptor, tcp)).await;
                        if !matches!(served, Ok(Ok(()))) {
                            tracing::debug!(%peer, "enrollment connection ended without an answer");
                        }
                    });
                }
            }
        }
    }
}

/// One enrollment connection: one request line, one answer line.
async fn serve(
    net: &Network,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
) -> std::io::Result<()> {
    let tls = acceptor.accept(tcp).await?;
    let (read, mut write) = tokio::io::split(tls);
    let mut line = Zeroizing::new(Vec::new());
    BufReader::new(read.take(MAX_REQUEST))
        .read_until(b'\n', &mut line)
        .await?;
    let request: Option<Value> = serde_json::from_slice(&line).ok();
    let id = request
        .as_ref()
        .and_then(|r| r.get("id"))
        .filter(|v| v.is_string() || v.is_number())
        .map_or(Id::Null, |v| Id::Text(v.to_string().into()));
    let reply = match request {
        Some(r) if r["method"] == "workstations.enroll" => match enroll(net, &r["params"]) {
            Ok(v) => match crate::json::JsonText::of(&v) {
                Ok(text) => Reply::ok(id, text),
                Err(e) => Reply::err(id, e.0),
            },
            Err(e) => Reply::err(id, e),
        },
        Some(_) => Reply::err(
            id,
            ErrorObject::new(
                api::METHOD_NOT_FOUND,
                "the enrollment listener serves workstations.enroll only",
                Some("method"),
            ),
        ),
        None => Reply::err(
            id,
            ErrorObject::new(api::PARSE_ERROR, "not a JSON-RPC request line", None),
        ),
    };
    write.write_all(&reply.to_line()).await?;
    write.shutdown().await
}

/// `workstations.enroll`: checks the proof against the codes pending for the name, issues the
/// certificate, records it, and answers it with the CA and the answer's proof.
pub fn enroll(net: &Network, params: &Value) -> Result<Value, ErrorObject> {
    let text = |field: &str| -> Result<String, ErrorObject> {
        params
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                ErrorObject::new(
                    api::INVALID_PARAMS,
                    format!("invalid params: {field}: a string is required"),
                    Some(field),
                )
            })
    };
    let (name, csr_pem, given) = (text("name")?, text("csr")?, text("proof")?);
    let csr = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes()).map_err(|e| {
        ErrorObject::new(
            api::INVALID_PARAMS,
            format!("invalid params: csr: no PEM certificate request: {e}"),
            Some("csr"),
        )
    })?;
    let now = chrono::Utc::now().timestamp();
    let code = {
        let mut s = lock(&net.enroll.state);
        s.pending.retain(|p| p.expires_at > now);
        let found = s
            .pending
            .iter()
            .position(|p| p.name == name && proof_holds(&p.code, &[csr.as_ref()], &given));
        match found {
            Some(i) => s.pending.remove(i).code,
            None => {
                s.bad_proofs += 1;
                let bad = s.bad_proofs;
                if bad >= MAX_BAD_PROOFS {
                    s.pending.clear();
                    s.bad_proofs = 0;
                    tracing::warn!(workstation = %name, bad_proofs = bad, "enrollment: too many bad proofs, every pending code dropped");
                } else {
                    tracing::warn!(workstation = %name, bad_proofs = bad, "enrollment refused: the proof matches no pending code of this name");
                }
                drop(s);
                net.enroll.changed.notify_one();
                return Err(ErrorObject::new(
                    api::INVALID_PARAMS,
                    "invalid params: proof: matches no pending pairing code for this name (wrong or expired code)",
                    Some("proof"),
                ));
            }
        }
    };
    net.enroll.changed.notify_one();
    let internal = |e: NetError| ErrorObject::new(api::INTERNAL_ERROR, e.to_string(), None);
    let ca = net.ca().map_err(internal)?;
    let days = i64::from(net.settings.certificate_days);
    let not_after = now + days * 86_400;
    let certificate = ca
        .issue_workstation(&csr, &name, now - 300, not_after)
        .map_err(|e| ErrorObject::new(api::INVALID_PARAMS, e.to_string(), Some("csr")))?;
    let (_, serial) = super::ca::dates_and_serial(&certificate).unwrap_or_default();
    let fp = fingerprint(&certificate);
    net.store
        .add(
            super::store::Enrolled {
                name: name.clone(),
                serial,
                fingerprint: fp.clone(),
                not_after: rfc3339(not_after),
                enrolled_at: rfc3339(now),
                revoked_at: None,
            },
            now,
        )
        .map_err(internal)?;
    tracing::info!(workstation = %name, fingerprint = %fp, not_after = %rfc3339(not_after), "workstation enrolled");
    Ok(json!({
        "certificate": pem("CERTIFICATE", &certificate),
        "ca": pem("CERTIFICATE", &ca.der),
        "proof": proof(&code, &[&ca.der, &certificate]),
        "api_port": net.bound().map(|a| a.port()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fsed_client::enroll::normalize_code;

    /// A network part in `dir` with an enrollment address on 127.0.0.1 (port 0).
    fn network(dir: &tempfile::TempDir) -> Arc<Network> {
        let mut cfg = crate::config::Config {
            state_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        cfg.network.enroll_listen = Some("127.0.0.1:0".parse().unwrap());
        Arc::new(Network::new(&cfg).unwrap())
    }

    /// A CSR (PEM, DER) of a fresh key.
    fn csr() -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        (csr.pem().unwrap(), csr.der().to_vec())
    }

    fn ask(net: &Network, name: &str, csr: &(String, Vec<u8>), code: &str) -> Result<Value, i64> {
        let key = normalize_code(code).unwrap();
        let params = json!({"name": name, "csr": csr.0, "proof": proof(&key, &[&csr.1])});
        enroll(net, &params).map_err(|e| e.code)
    }

    #[tokio::test]
    async fn a_code_serves_once_its_name_only_and_five_bad_proofs_drop_every_code() {
        let dir = tempfile::tempdir().unwrap();
        let net = network(&dir);
        let paired = pair(&net, "reception", 60).unwrap();
        let request = csr();
        let wrong = "0000-0000-0000-0000";
        // Four bad proofs (a wrong code, the right code for another name) leave the code.
        for _ in 0..2 {
            assert_eq!(ask(&net, "reception", &request, wrong), Err(-32602));
            assert_eq!(ask(&net, "doctor", &request, &paired.code), Err(-32602));
        }
        let answer = ask(&net, "reception", &request, &paired.code).unwrap();
        // The answer proves the code over the CA and the certificate, as sent.
        let key = normalize_code(&paired.code).unwrap();
        let pem_der = |m: &str| {
            rustls::pki_types::CertificateDer::from_pem_slice(
                answer[m].as_str().unwrap().as_bytes(),
            )
            .unwrap()
        };
        let (ca, cert) = (pem_der("ca"), pem_der("certificate"));
        assert!(proof_holds(
            &key,
            &[&ca, &cert],
            answer["proof"].as_str().unwrap()
        ));
        assert_eq!(fingerprint(&ca), paired.ca_fingerprint);
        assert!(net.store.in_force(&fingerprint(&cert)).is_some());
        // Used once: never again. (That was the fifth bad proof: 4 + 1; the count starts
        // again from 0, with no code pending to drop.)
        assert_eq!(ask(&net, "reception", &csr(), &paired.code), Err(-32602));
        // A new code: four bad proofs leave it, the fifth drops it, and then the right code
        // is refused.
        let paired = pair(&net, "reception", 60).unwrap();
        for _ in 0..4 {
            assert_eq!(ask(&net, "reception", &request, wrong), Err(-32602));
        }
        assert_eq!(net.enroll.pending(chrono::Utc::now().timestamp()), 1);
        assert_eq!(ask(&net, "reception", &request, wrong), Err(-32602));
        assert_eq!(net.enroll.pending(chrono::Utc::now().timestamp()), 0);
        assert_eq!(ask(&net, "reception", &csr(), &paired.code), Err(-32602));
    }
}
