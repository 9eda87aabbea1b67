//! The Vitale app's part of the API: `presence.challenge` as described, and `fse.create`
//! refusing a token (`APP_TOKEN_REFUSED` on `presence.app`) without making a sheet.

use serde_json::{json, Value};

use super::description::Conformance;
use crate::common::{self, Rpc};

/// A challenge, then two tokens refused: one that is no token, one over a challenge fsed
/// never gave (made by `fse-sim app` for the right practitioner). The CPS's PIN is verified.
pub(super) fn app_presence(c: &mut Conformance, rpc: &mut Rpc, g: &Value) {
    let challenge = c.ok(rpc, "presence.challenge", json!({}));
    let practitioner = challenge["practitioner_id"].as_str().unwrap().to_string();
    let e = c.refused(
        rpc,
        "fse.create",
        json!({"act": g, "presence": {"app": "FSEDAPP1:AAAA"}}),
        1052,
        Some("presence.app"),
    );
    assert_eq!(e["data"]["reason"], json!("malformed"), "{e}");
    let out = std::process::Command::new(common::bin("fse-sim"))
        .args([
            "app",
            "--challenge",
            "000102030405060708090a0b0c0d0e0f",
            "--practitioner",
            &practitioner,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let e = c.refused(
        rpc,
        "fse.create",
        json!({"act": g, "presence": {"app": token}}),
        1052,
        Some("presence.app"),
    );
    assert_eq!(e["data"]["reason"], json!("unknown_challenge"), "{e}");
}
