//! The simulator's test PKI checked by an independent tool: `fse-sim pki`
//! writes the root, the intermediate CAs, the CRLs and every built-in card's
//! certificate, and OpenSSL's `openssl verify` (with CRL checking) accepts
//! every card chain except the expired card and the revoked or opposed ones,
//! for the reason fsed gives too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::process::Command;

/// `openssl verify` of one card certificate against the written trust store: `Ok` or the error line.
fn openssl_verify(trust: &std::path::Path, card: &str) -> Result<(), String> {
    let out = Command::new("openssl")
        .current_dir(trust)
        .args([
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "ca.pem",
            "-crl_check",
            "-CRLfile",
            "crl.pem",
        ])
        .arg(format!("cards/{card}.pem"))
        .output()
        .expect("openssl is installed by tests/run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.contains(": OK") {
        Ok(())
    } else {
        Err(text)
    }
}

#[test]
fn openssl_accepts_every_card_chain_and_sees_the_revoked_ones() {
    let dir = tempfile::tempdir().unwrap();
    let trust = common::write_test_pki(&dir.path().join("trust"));
    let mut cards: Vec<String> = std::fs::read_dir(trust.join("cards"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    cards.sort();
    assert!(
        cards.len() >= 20,
        "one certificate per card profile: {cards:?}"
    );
    for card in &cards {
        let got = openssl_verify(&trust, card);
        match card.as_str() {
            "cps-revoked" | "vitale-opposition" => {
                let err = got.expect_err(card);
                assert!(err.contains("certificate revoked"), "{card}: {err}");
            }
            "cps-expired" => {
                let err = got.expect_err(card);
                assert!(err.contains("certificate has expired"), "{card}: {err}");
            }
            _ => assert_eq!(got, Ok(()), "{card}"),
        }
    }

    // Without the CPS CA's CRL (only the Vitale CA's left), openssl refuses to conclude on a
    // CPS with -crl_check: the written CRLs are what make the good cards pass.
    let crls = std::fs::read_to_string(trust.join("crl.pem")).unwrap();
    let end = "-----END X509 CRL-----\n";
    let first = crls.find(end).unwrap() + end.len();
    std::fs::write(trust.join("crl.pem"), &crls[first..]).unwrap();
    assert_eq!(openssl_verify(&trust, "vitale-famille"), Ok(()));
    let err = openssl_verify(&trust, "cps-medecin-generaliste").unwrap_err();
    assert!(err.contains("unable to get certificate CRL"), "{err}");
}
