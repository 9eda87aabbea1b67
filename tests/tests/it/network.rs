//! The network API over the real parts: fsed listening with mutual TLS 1.3 on 127.0.0.1 (port
//! 0, found through `workstations.list`), a workstation paired and enrolled with `fsectl`,
//! its calls under its rights, its revocation; certificates of another CA, expired or revoked
//! refused at the handshake and logged with their fingerprint; and independent tools:
//! `openssl verify` of the certificates against the practice CA, `openssl s_client` refused
//! without a client certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fsed_client::enroll::{enroll, Request};
use fsed_client::tls::{fingerprint, Identity};
use fsed_client::{Client, Error, Timeouts};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

use crate::common::{self, Rpc};

/// fsed with its log (standard error) in a file, killed on drop.
struct Logged {
    child: Child,
    log: PathBuf,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Logged {
    /// What fsed logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Reception may read the Vitale card and use the card methods, but no CPS.
const CONFIG: &str = r#"
[network]
listen = "127.0.0.1:0"
enroll_listen = "127.0.0.1:0"

[network.workstations.reception]
methods = ["vitale.read", "cards.*", "system.version"]
"#;

/// Starts fsed on its virtual reader (two slots) with the network API, its log in
/// `dir/fsed.log`; returns it and a client of its socket once ready.
fn start(dir: &Path) -> (Logged, Rpc) {
    let socket = dir.join("fsed.sock");
    let trust = common::write_test_pki(&dir.join("trust"));
    let config = dir.join("fsed.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let log = dir.join("fsed.log");
    let child = Command::new(common::bin("fsed"))
        .args(["--config", config.to_str().unwrap()])
        .args(["--state-dir", dir.to_str().unwrap()])
        .args(["--socket", socket.to_str().unwrap()])
        .args(["--cards", "virtual", "--transport", "spool"])
        .args(["--trust-dir", trust.to_str().unwrap()])
        .args(["--virtual-slot", &common::virtual_slot_address(dir, 0)])
        .args(["--virtual-slot", &common::virtual_slot_address(dir, 1)])
        .env("FSED_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let fsed = Logged { child, log };
    let rpc = Rpc::connect(&socket, Duration::from_secs(30));
    (fsed, rpc)
}

/// A call over the network with a 10 s read timeout: its whole answer, or why none came.
fn call(c: &mut Client, method: &str, params: Value) -> Result<Value, Error> {
    let id = c.send(method, params)?;
    c.reply(id)
}

fn connect(address: &str, identity: &Identity) -> Result<Client, Error> {
    Client::connect_tls_with(
        address,
        identity,
        Timeouts {
            connect: Duration::from_secs(10),
            read: Some(Duration::from_secs(10)),
        },
    )
}

/// Whether a connection with `identity` gets any answer: a refused certificate gets none.
fn answered(address: &str, identity: &Identity) -> bool {
    connect(address, identity)
        .and_then(|mut c| call(&mut c, "system.version", json!({})))
        .is_ok()
}

/// `fsectl` with these arguments: (success, stdout + stderr).
fn fsectl(args: &[&str]) -> (bool, String) {
    let out = Command::new(common::bin("fsectl"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `openssl verify -CAfile ca cert`: (success, output).
fn openssl_verify(ca: &Path, cert: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(cert)
        .output()
        .expect("openssl is installed by tests/run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.contains(": OK"), text)
}

/// A client certificate for `name` issued by (`params`, `key`), valid from `from` to `to`
/// (Unix seconds), as an identity trusting `ca`.
fn issued_identity(
    issuer: &Issuer<'_, KeyPair>,
    ca: &CertificateDer<'static>,
    name: &str,
    from: i64,
    to: i64,
) -> Identity {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    Identity {
        ca: ca.clone(),
        certificate: cert.der().clone(),
        key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        name: name.into(),
        host: "127.0.0.1:1".into(),
    }
}

/// Waits until fsed's log holds a line with both `a` and `b`.
fn wait_logged(fsed: &Logged, a: &str, b: &str) -> String {
    common::wait_for(
        &format!("a log line with {a} and {b}"),
        Duration::from_secs(10),
        || {
            fsed.log()
                .lines()
                .find(|l| l.contains(a) && l.contains(b))
                .map(str::to_string)
        },
    )
}

/// A workstation with no rights entry over mutual TLS: `vitale.read` yes; the doctor's CPS,
/// `fse.create` and `workstations.*` no (`NOT_PERMITTED`), the PIN never presented; the
/// connection, still open.
fn calls_under_the_default_rights(rpc: &mut common::Rpc, api: &str, me: &Identity) -> Client {
    // Calls under the rights: vitale.read yes; the doctor's CPS no; fse.create no;
    // workstations.* never over the network.
    let mut c = connect(api, me).unwrap();
    let vitale = call(&mut c, "vitale.read", json!({})).unwrap();
    assert!(vitale.get("result").is_some(), "{vitale}");
    let cps = common::serials(rpc)
        .into_iter()
        .find(|(kind, _)| kind == "cps")
        .unwrap()
        .1;
    let r = call(&mut c, "cards.verify_pin", json!({"pin": "1234"})).unwrap();
    assert_eq!(r["error"]["code"], json!(1044), "{r}");
    assert_eq!(r["error"]["data"]["workstation"], json!("reception"), "{r}");
    assert_eq!(r["error"]["data"]["cps_serial"], json!(cps), "{r}");
    let r = call(&mut c, "fse.create", json!({"act": {"code": "G"}})).unwrap();
    assert_eq!(r["error"]["code"], json!(1044), "{r}");
    assert_eq!(r["error"]["data"]["method"], json!("fse.create"), "{r}");
    let r = call(&mut c, "workstations.list", json!({})).unwrap();
    assert_eq!(r["error"]["code"], json!(1044), "{r}");
    // The PIN was never presented: the CPS still has its 3 tries, none spent.
    let status = rpc.ok("cards.pin_status", json!({}));
    assert_eq!(
        (&status["verified"], &status["tries_left"]),
        (&json!(false), &json!(3)),
        "{status}"
    );
    c
}

#[test]
fn workstations_pair_enroll_call_under_their_rights_and_are_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let (fsed, mut rpc) = start(dir.path());
    let (_cards, _control) = common::start_fast_cards_on(dir.path(), &[]);
    common::wait_cards(&mut rpc, 2);
    let api = rpc.ok("workstations.list", json!({}))["listen"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        api.starts_with("127.0.0.1:") && !api.ends_with(":0"),
        "{api}"
    );

    // Pairing: the code's form, and the listener that opened for it.
    let paired = rpc.ok("workstations.pair", json!({"name": "reception"}));
    let code = paired["code"].as_str().unwrap().to_string();
    let enroll_at = paired["enroll_address"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 19, "16 characters in 4 groups: {code}");

    // A wrong code is refused; the right one then works once, never twice.
    let mut wrong = code.clone().into_bytes();
    wrong[0] = if wrong[0] == b'A' { b'B' } else { b'A' };
    let wrong = String::from_utf8(wrong).unwrap();
    let refused = enroll(&Request {
        enroll_address: &enroll_at,
        host: &api,
        name: "reception",
        code: &wrong,
        timeout: Duration::from_secs(10),
    });
    match refused {
        Err(Error::Peer(p)) => assert_eq!((p.code, p.field()), (-32602, Some("proof")), "{p:?}"),
        other => panic!("a wrong code was not refused: {other:?}"),
    }
    let identity_dir = dir.path().join("identity");
    let out = identity_dir.to_str().unwrap();
    let (ok, text) = fsectl(&[
        "enroll",
        "--host",
        &enroll_at,
        "--name",
        "reception",
        "--code",
        &code,
        "--out",
        out,
    ]);
    assert!(ok, "fsectl enroll: {text}");
    let (ok, text) = fsectl(&[
        "enroll",
        "--host",
        &enroll_at,
        "--name",
        "reception",
        "--code",
        &code,
        "--out",
        dir.path().join("again").to_str().unwrap(),
    ]);
    assert!(!ok, "a code used once was accepted again: {text}");

    let socket = dir.path().join("fsed.sock");
    let (ok, text) = fsectl(&["--socket", socket.to_str().unwrap(), "workstations", "list"]);
    assert!(
        ok && text.contains("reception"),
        "fsectl workstations list: {text}"
    );
    let me = Identity::load(&identity_dir).unwrap();
    // The identity records the API's address (the enrollment answer gives its port).
    assert_eq!(me.host, api);
    let listed = rpc.ok("workstations.list", json!({}));
    assert_eq!(
        listed["workstations"][0]["fingerprint"],
        json!(me.fingerprint())
    );

    // Independent check: openssl accepts the workstation certificate under the practice CA.
    let (ok, text) = openssl_verify(
        &identity_dir.join("ca.crt"),
        &identity_dir.join("client.crt"),
    );
    assert!(ok, "openssl verify: {text}");

    let mut c = calls_under_the_default_rights(&mut rpc, &api, &me);

    // fsectl talks to the remote fsed with the identity.
    let (ok, text) = fsectl(&["--host", &api, "--identity", out, "--json", "version"]);
    assert!(ok && text.contains("\"name\": \"fsed\""), "{text}");

    // Revocation: the open connection closes, a new handshake is refused and logged.
    let listed = rpc.ok("workstations.list", json!({}));
    assert_eq!(
        listed["workstations"][0]["connected"],
        json!(true),
        "{listed}"
    );
    let r = rpc.ok("workstations.revoke", json!({"name": "reception"}));
    assert_eq!(r["revoked"], json!(1));
    assert!(
        call(&mut c, "system.version", json!({})).is_err(),
        "the revoked workstation's connection stayed open"
    );
    assert!(!answered(&api, &me), "a revoked certificate was served");
    let line = wait_logged(&fsed, &me.fingerprint(), "revoked");
    assert!(line.contains("refused at the handshake"), "{line}");
}

#[test]
fn unknown_expired_and_certificate_less_clients_are_refused_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (fsed, mut rpc) = start(dir.path());
    let api = rpc.ok("workstations.list", json!({}))["listen"]
        .as_str()
        .unwrap()
        .to_string();
    // The doctor reports the listener and the server certificate's end (397 days ahead).
    let doctor = rpc.ok("system.doctor", json!({}));
    let check = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "network")
        .unwrap()
        .clone();
    assert_eq!(check["status"], json!("ok"), "{check}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        // 397 × 86400 s from when it was made, a few seconds ago: 396 whole days and more.
        detail.contains(&api) && (detail.contains("(396 days)") || detail.contains("(397 days)")),
        "{check}"
    );
    let network = dir.path().join("network");
    let ca_pem = std::fs::read_to_string(network.join("ca.crt")).unwrap();
    let ca_der = CertificateDer::from(pem::parse(&ca_pem).unwrap().contents().to_vec());
    let now = chrono::Utc::now().timestamp();

    // Another CA's certificate, trusting our server.
    let mut other_params = CertificateParams::default();
    other_params
        .distinguished_name
        .push(DnType::CommonName, "elsewhere");
    other_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_key = KeyPair::generate().unwrap();
    let other_cert = other_params.self_signed(&other_key).unwrap();
    let other = Issuer::new(other_params, other_key);
    let stranger = issued_identity(&other, &ca_der, "stranger", now - 60, now + 86_400);
    assert!(
        !answered(&api, &stranger),
        "another CA's certificate was served"
    );
    wait_logged(&fsed, &fingerprint(&stranger.certificate), "refused");

    // An expired certificate of the practice CA itself (made here with its key): two days
    // ago to yesterday.
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(network.join("ca.key")).unwrap()).unwrap();
    let practice = Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let expired = issued_identity(&practice, &ca_der, "old", now - 2 * 86_400, now - 86_400);
    assert!(
        !answered(&api, &expired),
        "an expired certificate was served"
    );
    let line = wait_logged(&fsed, &fingerprint(&expired.certificate), "refused");
    assert!(line.to_lowercase().contains("expired"), "{line}");
    // Valid dates, the practice CA, but never enrolled: refused too.
    let unenrolled = issued_identity(&practice, &ca_der, "ghost", now - 60, now + 86_400);
    assert!(
        !answered(&api, &unenrolled),
        "an unenrolled certificate was served"
    );
    wait_logged(&fsed, &fingerprint(&unenrolled.certificate), "not enrolled");

    // openssl: the practice CA does not verify the other CA's certificate.
    let stray = dir.path().join("stranger.crt");
    std::fs::write(
        &stray,
        fsed_client::tls::pem("CERTIFICATE", &stranger.certificate),
    )
    .unwrap();
    let (ok, text) = openssl_verify(&network.join("ca.crt"), &stray);
    assert!(!ok, "openssl verified another CA's certificate: {text}");
    std::fs::write(dir.path().join("other-ca.crt"), other_cert.pem()).unwrap();

    // openssl s_client without a client certificate: the handshake ends in an alert, and no
    // application data (no JSON-RPC answer) comes back.
    let mut s_client = Command::new("timeout")
        .args([
            "20", "openssl", "s_client", "-tls1_3", "-ign_eof", "-connect", &api,
        ])
        .args(["-servername", "fsed.practice", "-CAfile"])
        .arg(network.join("ca.crt"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = s_client.stdin.take().unwrap();
        stdin
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"system.version\"}\n")
            .unwrap();
    }
    let out = s_client.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("alert certificate required"),
        "no certificate-required alert: {text}"
    );
    assert!(
        !text.contains("\"jsonrpc\""),
        "application data came back: {text}"
    );
    assert_ne!(out.status.code(), Some(124), "s_client hung: {text}");
    // The server certificate it saw was verified against the practice CA, as fsed.practice.
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
}
