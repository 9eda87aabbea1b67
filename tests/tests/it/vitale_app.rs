//! The Vitale app (ApCV) end to end: `fse-sim app` makes a token over fsed's challenge
//! (`presence.challenge`), `fse.create` with `presence.app` accepts it once and makes an app
//! sheet whose beneficiary is the token's; a token replayed (a restart included), expired,
//! bound to another practitioner, signed under a CA nobody trusts or over a challenge fsed
//! never gave is refused with its reason. Fast tier: the virtual reader and the spool. Full
//! tier: the QR code read back from its PNG by `zbarimg` (Debian's zbar-tools), and an app
//! sheet sent over RabbitMQ to the insurer simulator, which verifies the token (a tampered
//! one is rejected).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::{self, Rpc};

/// `fse-sim app` with `args` (after `app`): the token's text (its stdout's one line).
fn app_token(args: &[&str]) -> String {
    let out = Command::new(common::bin("fse-sim"))
        .arg("app")
        .args(args)
        .output()
        .expect("fse-sim app");
    assert!(
        out.status.success(),
        "fse-sim app: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.trim().to_string();
    assert!(line.starts_with("FSEDAPP1:"), "{line}");
    // The QR code went to the terminal (stderr): Unicode half blocks.
    assert!(String::from_utf8_lossy(&out.stderr).contains('█'));
    line
}

/// A challenge of fsed's and the practitioner it names.
fn challenge(rpc: &mut Rpc) -> (String, String) {
    let c = rpc.ok("presence.challenge", json!({}));
    let hex = c["challenge"].as_str().unwrap().to_string();
    assert_eq!(hex.len(), 32, "{c}");
    (hex, c["practitioner_id"].as_str().unwrap().to_string())
}

/// A token of beneficiary 1 (Léa) of the default card, over `challenge`, for `practitioner`,
/// with `extra` knobs.
fn token_for(challenge: &str, practitioner: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "--beneficiary",
        "1",
        "--challenge",
        challenge,
        "--practitioner",
        practitioner,
    ];
    args.extend_from_slice(extra);
    app_token(&args)
}

fn create(rpc: &mut Rpc, token: &str) -> Value {
    rpc.call(
        "fse.create",
        json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}, "presence": {"app": token}}),
    )
}

/// The refusal of `reply`: `APP_TOKEN_REFUSED` on `presence.app`, with `reason`.
fn assert_refused(reply: &Value, reason: &str) {
    assert_eq!(reply["error"]["code"], json!(1052), "{reply}");
    assert_eq!(
        reply["error"]["data"]["field"],
        json!("presence.app"),
        "{reply}"
    );
    assert_eq!(reply["error"]["data"]["reason"], json!(reason), "{reply}");
}

/// fsed on the virtual reader with the default cards, the CPS's PIN verified.
fn fsed_with_cards(dir: &Path) -> (common::Proc, Rpc, common::Proc) {
    let (fsed, mut rpc) = common::start_fsed_virtual(dir, 2, "", &[]);
    let (cards, _) = common::start_fast_cards_on(dir, &[]);
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    (fsed, rpc, cards)
}

/// The app sheet made from Léa's token: mode `app`, her identity, the token as its presence,
/// rights from the app read when the token was made.
fn assert_app_sheet(created: &Value, token: &str) {
    let sheet = &created["sheet"];
    assert_eq!(sheet["mode"], json!("app"), "{created}");
    assert_eq!(sheet["beneficiary"]["given_name"], json!("Léa"), "{sheet}");
    assert_eq!(sheet["presence"], Value::Null);
    assert_eq!(sheet["rights_source"], json!("app"));
    let der = hex::decode(sheet["app_presence"]["token"].as_str().unwrap()).unwrap();
    let shown = fse_formats::app::AppToken::from_text(token).unwrap();
    assert_eq!(der, shown.to_der().unwrap(), "the token as shown, DER");
    assert_eq!(sheet["rights"]["read_at"], json!(shown.body.issued_at));
}

#[test]
fn an_app_token_makes_one_sheet_and_every_bad_token_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (mut fsed, mut rpc, cards) = fsed_with_cards(dir.path());
    let (c, practitioner) = challenge(&mut rpc);
    let token = token_for(&c, &practitioner, &[]);
    let keyed = json!({"act": {"code": "G"}, "tiers_payant": {"amo": true},
                       "presence": {"app": token}, "idempotency_key": "app-1"});
    let created = rpc.ok("fse.create", keyed.clone());
    assert_app_sheet(&created, &token);
    // The stored sheet reads back the same.
    let id = created["id"].as_i64().unwrap();
    let stored = rpc.ok("fse.get", json!({"id": id}));
    assert_eq!(stored["sheet"]["mode"], json!("app"));
    // A retry of the same request (its key, its token) answers the sheet made first.
    assert_eq!(rpc.ok("fse.create", keyed)["id"], json!(id));

    // The same token again: replayed, and so after a restart.
    assert_refused(&create(&mut rpc, &token), "replayed");
    assert!(fsed.terminate().success());
    drop((rpc, cards));
    let (_fsed, mut rpc, _cards) = fsed_with_cards(dir.path());
    assert_refused(&create(&mut rpc, &token), "replayed");

    // Expired, another practitioner, an unknown CA, a challenge fsed never gave, garbage.
    let (c, practitioner) = challenge(&mut rpc);
    let expired = token_for(&c, &practitioner, &["--expired"]);
    assert_refused(&create(&mut rpc, &expired), "expired");
    let other = token_for(&c, "810009999999", &[]);
    assert_refused(&create(&mut rpc, &other), "wrong_practitioner");
    let rogue = token_for(&c, &practitioner, &["--sign-with-unknown-ca"]);
    assert_refused(&create(&mut rpc, &rogue), "untrusted");
    let never = token_for("00112233445566778899aabbccddeeff", &practitioner, &[]);
    assert_refused(&create(&mut rpc, &never), "unknown_challenge");
    assert_refused(&create(&mut rpc, "FSEDAPP1:AAAA"), "malformed");
    // A token living 10 minutes when 5 are allowed.
    let long = token_for(&c, &practitioner, &["--lifetime-secs", "600"]);
    assert_refused(&create(&mut rpc, &long), "expired");
    // None of them spent the challenge: a good token over it is still accepted, once.
    let good = token_for(&c, &practitioner, &[]);
    assert_app_sheet(
        &rpc.ok(
            "fse.create",
            json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}, "presence": {"app": good}}),
        ),
        &good,
    );
    let again = token_for(&c, &practitioner, &["--lifetime-secs", "119"]);
    assert_refused(&create(&mut rpc, &again), "unknown_challenge");
    // Degraded and app at once: a parameter error.
    let both = rpc.call(
        "fse.create",
        json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}, "presence": {"app": again},
               "degraded": {"reason": "x", "beneficiary": {"nir": "185057800608491", "surname": "DUPONT", "given_name": "Jean", "birth_date": "19850512", "rank": 1, "organism": "017510001"}}}),
    );
    assert_eq!(both["error"]["code"], json!(-32602), "{both}");
}

/// The QR code read back from its PNG by an independent decoder, then accepted.
#[cfg(feature = "full")]
#[test]
fn zbarimg_reads_the_qr_code_fsed_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (_fsed, mut rpc, _cards) = fsed_with_cards(dir.path());
    let (c, practitioner) = challenge(&mut rpc);
    let png = dir.path().join("token.png");
    let shown = token_for(&c, &practitioner, &["--png", png.to_str().unwrap()]);
    let out = Command::new("zbarimg")
        .args(["--raw", "-q", png.to_str().unwrap()])
        .output()
        .expect("zbarimg (Debian's zbar-tools)");
    assert!(out.status.success(), "zbarimg: {out:?}");
    let read = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(read, shown, "the QR code says what fse-sim app printed");
    let created = rpc.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}, "presence": {"app": read}}),
    );
    assert_app_sheet(&created, &shown);
}

/// Organism of the default Vitale card (régime 01, caisse 751, centre 0001): the insurer.
#[cfg(feature = "full")]
const DESTINATION: &str = "017510001";

/// fsed on its virtual reader (slots in `dir`) and the AMQP transport with `return_queue`.
#[cfg(feature = "full")]
fn fsed_amqp(dir: &Path, return_queue: &str) -> (common::Proc, Rpc) {
    common::start_fsed_virtual(
        dir,
        2,
        "",
        &["--transport", "amqp", "--return-queue", return_queue],
    )
}

/// An app lot whose first sheet names another beneficiary than its token does, signed again
/// by the CPS as fsed would (so only the app check can refuse it).
#[cfg(feature = "full")]
fn tampered_app_lot(lot_id: &str) -> fse_formats::lot::SignedLot {
    use ed25519_dalek::Signer;
    let mut lot = fse_simulator::insurer::sample_app_lot(lot_id, 2).unwrap();
    let mut sheet = fse_formats::fse::CareSheet::from_der(&lot.entries[0].sheet).unwrap();
    sheet.beneficiary.given_name = "Léa".into();
    lot.entries[0].sheet = sheet.to_der().unwrap();
    lot.header.merkle_root = fse_formats::merkle::root(&fse_formats::lot::leaves(&lot.entries));
    let key = fse_simulator::profiles::test_key(&lot.header.cps_serial);
    lot.signature = key.sign(&lot.header.to_der().unwrap()).to_bytes();
    lot
}

/// The ARL of `lot` sent over the broker to the insurer bound to [`DESTINATION`].
#[cfg(feature = "full")]
fn arl_over_the_broker(lot: &fse_formats::lot::SignedLot) -> fse_formats::ack::Arl {
    use fse_formats::ack::{ReturnContent, SignedReturn};
    use fsed::transport::amqp::{AmqpConfig, AmqpTransport};
    let return_queue = format!("fsed.returns.app.{}", common::unique());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let arl = rt.block_on(async {
        let transport = AmqpTransport::connect(&AmqpConfig {
            url: common::AMQP.into(),
            return_queue: return_queue.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        transport
            .publish_lot(&lot.header.lot_id, DESTINATION, &lot.to_der().unwrap())
            .await
            .unwrap();
        let mut returns = transport.returns().await.unwrap();
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(30), returns.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let signed = SignedReturn::from_der(&msg.body).unwrap();
            msg.ack().await.unwrap();
            if let ReturnContent::Arl(arl) = signed.content {
                break arl;
            }
        }
    });
    common::delete_queues(&[&return_queue]);
    arl
}

/// An app sheet made by fsed goes over RabbitMQ to the insurer simulator, which verifies its
/// token against its trust store and acknowledges it; a lot whose app sheet names another
/// beneficiary than its token is rejected `APP_PRESENCE`.
#[cfg(feature = "full")]
#[test]
fn the_insurer_verifies_an_app_sheet_over_rabbitmq_and_rejects_a_tampered_one() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let return_queue = format!("fsed.returns.app.{}", common::unique());
    // Lots another run left in the default organism's queue would be answered first.
    common::delete_queues(&[&format!("insurer.amo.{DESTINATION}")]);
    let (_fsed, mut rpc) = fsed_amqp(dir.path(), &return_queue);
    let trust = dir.path().join("trust");
    let _insurer = common::start_insurer(&[
        "--binding",
        DESTINATION,
        "--trust-dir",
        trust.to_str().unwrap(),
    ]);
    let (_cards, _) = common::start_fast_cards_on(dir.path(), &[]);
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let (c, practitioner) = challenge(&mut rpc);
    let token = token_for(&c, &practitioner, &[]);
    let created = rpc.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}, "presence": {"app": token}}),
    );
    assert_app_sheet(&created, &token);
    let id = created["id"].as_i64().unwrap();
    rpc.ok("lots.close", json!({}));
    let sheet = common::wait_for(
        "the app sheet acknowledged",
        std::time::Duration::from_secs(60),
        || {
            let s = rpc.ok("fse.get", json!({"id": id}));
            (s["state"] != json!("accepted")
                && s["state"] != json!("in_lot")
                && s["state"] != json!("signed")
                && s["state"] != json!("sent"))
            .then_some(s)
        },
    );
    assert_eq!(sheet["state"], json!("acknowledged"), "{sheet}");

    let arl = arl_over_the_broker(&tampered_app_lot(&format!("LOT-APP-{}", common::unique())));
    assert_eq!(arl.status, fse_formats::ack::ArlStatus::Negative, "{arl:?}");
    assert_eq!(arl.rejections.len(), 1, "{arl:?}");
    assert_eq!(arl.rejections[0].code, "APP_PRESENCE");
    assert_eq!(arl.rejections[0].sheet_number, Some(1));
    assert!(
        arl.rejections[0].reason.starts_with("wrong_beneficiary"),
        "{arl:?}"
    );
    common::delete_queues(&[&return_queue]);
}

/// OpenSSL, an independent X.509 implementation, accepts each built-in app certificate's
/// chain and reads its Vitale-app extended key usage (the object identifier of
/// `fse_formats::pki::OID_VITALE_APP`), which the app CA carries too.
#[cfg(feature = "full")]
#[test]
fn openssl_accepts_the_app_certificates_and_reads_their_key_usage() {
    let dir = tempfile::tempdir().unwrap();
    let trust = common::write_test_pki(dir.path());
    let apps: Vec<_> = std::fs::read_dir(trust.join("apps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // vitale-famille has 2 beneficiaries: at least their 2 apps.
    assert!(apps.len() >= 2, "{apps:?}");
    for app in &apps {
        let out = Command::new("openssl")
            .current_dir(&trust)
            .args(["verify", "-CAfile", "root.pem", "-untrusted", "ca.pem"])
            .arg(app)
            .output()
            .expect("openssl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(": OK"),
            "{text}{out:?}"
        );
        let shown = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(app)
            .output()
            .expect("openssl");
        let shown = String::from_utf8_lossy(&shown.stdout);
        assert!(
            shown.contains(fse_formats::pki::OID_VITALE_APP),
            "{}: {shown}",
            app.display()
        );
        let name = app.file_stem().unwrap().to_str().unwrap();
        // "serialNumber = X" (OpenSSL 3's default name format) or "serialNumber=X".
        assert!(
            shown.contains(&format!("serialNumber = {name}"))
                || shown.contains(&format!("serialNumber={name}")),
            "{shown}"
        );
    }
}
