//! The input rules of `fse.create` through fsed's Unix socket, on fsed's
//! embedded virtual reader with the simulated cards on Unix-socket slots:
//! every text field refused with its field and the faulty character printed
//! safely, text normalised to NFC and ASCII forms in the sheet stored and
//! signed, the NIR's structure part by part, the birth rank, and a
//! remplaçant's titular billing number (its key, not his own, the one his
//! remplacement situation bills under) with the payee the sheet shows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{order, serials, wait_for, Proc, Rpc};
use fse_formats::fse::CareSheet;
use serde_json::{json, Value};

const MARTIN: &str = "810000000009";

/// A degraded GP sheet for Jean DUPONT with `beneficiary` members changed.
fn degraded(beneficiary: Value, reason: &str) -> Value {
    let mut b = json!({"nir": "185057800608491", "surname": "DUPONT", "given_name": "Jean",
                       "birth_date": "19850512", "rank": 1, "organism": "017510001"});
    for (k, v) in beneficiary.as_object().unwrap() {
        b[k] = v.clone();
    }
    json!({"act": {"code": "G"}, "tiers_payant": {"amo": true},
           "degraded": {"reason": reason, "beneficiary": b}})
}

/// Calls `fse.create`, checks the refusal's name, rule and field; returns its message.
fn refused(rpc: &mut Rpc, params: &Value, name: &str, rule: &str, field: &str) -> String {
    let r = rpc.call("fse.create", params.clone());
    let e = &r["error"];
    let shown = format!("{:.300}", r.to_string());
    assert_eq!(e["data"]["name"], json!(name), "{shown}");
    assert_eq!(e["data"]["rule"], json!(rule), "{shown}");
    assert_eq!(e["data"]["field"], json!(field), "{shown}");
    e["message"].as_str().unwrap().to_string()
}

#[test]
fn text_nir_rank_and_titular_rules_hold_over_the_socket() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let (mut fsed, mut rpc, _cards, control) = start_on_virtual_slots(dir.path());
    remplacant_bills_for_the_titular(&mut rpc);
    swap_to_dr_martin(&control, &mut rpc);
    text_fields_name_the_character(&mut rpc);
    nir_rules_part_by_part(&mut rpc);
    nfd_text_is_signed_in_nfc(&mut rpc);
    drop(rpc);
    assert!(fsed.terminate().success());
}

/// fsed on its embedded virtual reader (Unix socket slots in `dir`), the remplaçant's CPS in,
/// the PIN verified; returns fsed, a client, the cards and their control socket.
fn start_on_virtual_slots(dir: &Path) -> (Proc, Rpc, Proc, PathBuf) {
    let (cps, vitale) = (dir.join("cps.vpcd"), dir.join("vitale.vpcd"));
    let slots = [
        format!("unix:{}", cps.display()),
        format!("unix:{}", vitale.display()),
    ];
    let trust = common::write_test_pki(&dir.join("trust"));
    let socket = dir.join("fsed.sock");
    let mut fsed = Proc::start(
        "fsed",
        &[
            "--config",
            "/dev/null",
            "--state-dir",
            dir.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--cards",
            "virtual",
            "--transport",
            "spool",
            "--trust-dir",
            trust.to_str().unwrap(),
            "--virtual-slot",
            &slots[0],
            "--virtual-slot",
            &slots[1],
        ],
    );
    fsed.wait_line("fsed ready", Duration::from_secs(30));
    let mut rpc = Rpc::connect(&socket, Duration::from_secs(10));
    let (cards, control) = common::start_fast_cards(
        dir,
        &[
            "--cps-socket",
            cps.to_str().unwrap(),
            "--vitale-socket",
            vitale.to_str().unwrap(),
            "--cps-profile",
            "cps-remplacant",
        ],
    );
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    (fsed, rpc, cards, control)
}

/// A remplaçant bills for the titular he replaces: the billing number's rules, the replaced
/// practitioner's text.
fn remplacant_bills_for_the_titular(rpc: &mut Rpc) {
    let (v, r) = ("INVALID_PARAMS", "RULE_VIOLATION");
    // A remplaçant (LEROY, CPS-0101): his situation 0 replaces the titular of 75123455,
    // situation 1 is his salaried post under 92123454.
    let titular = |number: &str| {
        json!({"act": {"code": "G"}, "replaced": {"national_id": MARTIN, "surname": "MARTIN",
               "given_name": "Claire", "billing_number": number}})
    };
    // 75123455: Luhn from the right 5, 5×2 = 10 → 1, 4, 3×2 = 6, 2, 1×2 = 2, 5, 7×2 = 14 → 5:
    // sum 30. The sheet is paid on it; LEROY's national id says who did the care.
    let made = rpc.ok("fse.create", titular("75123455"));
    assert_eq!(made["sheet"]["payee_billing_number"], "75123455", "{made}");
    assert_eq!(made["sheet"]["replaced"]["billing_number"], "75123455");
    assert_eq!(made["sheet"]["practitioner"]["billing_number"], "75123455");
    assert_eq!(made["sheet"]["practitioner"]["national_id"], "810000001015");
    let got = rpc.ok("fse.get", json!({"id": made["id"]}));
    assert_eq!(got["sheet"]["payee_billing_number"], "75123455", "{got}");
    for (number, why) in [
        // Luhn sum of 75123456: 6 + 1 + 4 + 6 + 2 + 2 + 5 + 5 = 31.
        ("75123456", "not the Luhn key"),
        ("92123454", "the remplaçant's own (situation 1)"),
        // 75123489: 9 + 7 + 4 + 6 + 2 + 2 + 5 + 5 = 40, a key, but another practitioner's.
        ("75123489", "bills under 75123455"),
    ] {
        let m = refused(
            rpc,
            &titular(number),
            r,
            "REPLACED_BILLING_NUMBER_INVALID",
            "replaced.billing_number",
        );
        assert!(m.contains(why), "{number}: {m}");
    }
    refused(
        rpc,
        &titular("7512345"),
        v,
        "BAD_REQUEST",
        "replaced.billing_number",
    );
    let mut emoji = titular("75123455");
    emoji["replaced"]["surname"] = json!("MARTIN\u{1f600}");
    let m = refused(rpc, &emoji, v, "BAD_REQUEST", "replaced.surname");
    assert!(m.contains("U+1F600 at position 7"), "{m}");
    assert!(
        !m.contains('\u{1f600}'),
        "the message does not echo the emoji: {m}"
    );
}

/// Dr MARTIN's card for the degraded sheets.
fn swap_to_dr_martin(control: &Path, rpc: &mut Rpc) {
    // Dr MARTIN's card for the degraded sheets (the Vitale card left in is not read).
    order(
        control,
        &[
            "swap",
            "--slot",
            "cps",
            "--profile",
            "cps-medecin-generaliste",
            "--gap-ms",
            "1000",
        ],
    );
    wait_for("Dr MARTIN's CPS", Duration::from_secs(20), || {
        serials(rpc)
            .iter()
            .any(|(_, s)| s == "CPS-0001")
            .then_some(())
    });
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
}

/// Text fields: the field, the character as a code point and its position.
fn text_fields_name_the_character(rpc: &mut Rpc) {
    let v = "INVALID_PARAMS";
    // Text fields: the field, the character as a code point and its position.
    let long_name = "J".repeat(10_000);
    let text_cases: Vec<(Value, &str, &str)> = vec![
        (
            degraded(json!({"surname": "DUP\u{202e}ONT"}), "oubli"),
            "degraded.beneficiary.surname",
            "character U+202E at position 4 ",
        ),
        (
            degraded(json!({"surname": "DU\u{0}PONT"}), "oubli"),
            "degraded.beneficiary.surname",
            "character U+0000 at position 3 ",
        ),
        (
            degraded(json!({"given_name": long_name}), "oubli"),
            "degraded.beneficiary.given_name",
            "is 10000 characters long: at most 80",
        ),
        (
            degraded(json!({"given_name": "Jean  Paul"}), "oubli"),
            "degraded.beneficiary.given_name",
            "U+0020 then U+0020 at positions 5-6",
        ),
        (
            degraded(json!({}), "carte \u{1b}]0;oubli\u{7}"),
            "degraded.reason",
            "character U+001B at position 7 ",
        ),
        (
            degraded(json!({}), &"x".repeat(201)),
            "degraded.reason",
            "is 201 characters long: at most 200",
        ),
    ];
    for (params, field, reason) in text_cases {
        let m = refused(rpc, &params, v, "BAD_REQUEST", field);
        assert!(m.starts_with(reason), "{field}: {m}");
        assert!(
            !m.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{m:?}"
        );
    }
    let mut code = degraded(json!({}), "oubli");
    code["act"]["code"] = json!("G".repeat(5000));
    let m = refused(rpc, &code, v, "BAD_REQUEST", "acts[0].code");
    assert_eq!(m, "is 5000 characters long: at most 16");
    let mut key = degraded(json!({}), "oubli");
    key["idempotency_key"] = json!("visit\t42");
    refused(rpc, &key, v, "BAD_REQUEST", "idempotency_key");
}

/// The NIR, part by part, its key, the rank.
fn nir_rules_part_by_part(rpc: &mut Rpc) {
    let (v, r) = ("INVALID_PARAMS", "RULE_VIOLATION");
    // The NIR, part by part (keys worked out in formats/src/ids.rs from 1 85 05 78 006 084,
    // n mod 97 = 6).
    for (nir, part) in [
        ("000000000000097", "sex digit (character 1) is 0"),
        ("185137800608425", "birth month (characters 4-5) is 13"),
        (
            "185050000608463",
            "département of birth (characters 6-7, 6-8 overseas) is 00",
        ),
        ("185059790608429", "is 979"),
        ("185057800008477", "commune of birth is 000"),
        ("185057800600078", "order number (characters 11-13) is 000"),
        ("18505780060849", "has 15 characters"),
    ] {
        let m = refused(
            rpc,
            &degraded(json!({"nir": nir}), "oubli"),
            r,
            "NIR_INVALID",
            "degraded.beneficiary.nir",
        );
        assert!(m.contains(part), "{nir}: {m}");
    }
    refused(
        rpc,
        &degraded(json!({"nir": "185057800608492"}), "oubli"),
        r,
        "NIR_KEY_MISMATCH",
        "degraded.beneficiary.nir",
    );
    refused(
        rpc,
        &degraded(json!({"rank": 0}), "oubli"),
        v,
        "BAD_REQUEST",
        "degraded.beneficiary.rank",
    );
}

/// Text in NFD with typographic forms: stored, read back and signed in NFC and ASCII forms.
fn nfd_text_is_signed_in_nfc(rpc: &mut Rpc) {
    // Text in NFD with typographic forms: stored, read back and signed in NFC and ASCII forms.
    // Given name "Le" + U+0301 + "a" → "Léa" (é = U+00E9); "D" + U+2019 + "ARC" → "D'ARC";
    // the reason's no-break space (U+00A0) → space, the spaces around it dropped.
    let made = rpc.ok(
        "fse.create",
        degraded(
            json!({"surname": "D\u{2019}ARC", "given_name": "Le\u{301}a"}),
            " carte\u{a0}oublie\u{301}e ",
        ),
    );
    let expect = |sheet: &Value| {
        assert_eq!(sheet["beneficiary"]["given_name"], "L\u{e9}a", "{sheet}");
        assert_eq!(sheet["beneficiary"]["surname"], "D'ARC", "{sheet}");
        assert_eq!(sheet["degraded_reason"], "carte oubli\u{e9}e", "{sheet}");
    };
    expect(&made["sheet"]);
    expect(&rpc.ok("fse.get", json!({"id": made["id"]}))["sheet"]);
    rpc.ok("lots.close", json!({}));
    let proof = wait_for("the lot signed", Duration::from_secs(30), || {
        let p = rpc.call("fse.proof", json!({"id": made["id"]}));
        p.get("result").cloned()
    });
    let signed =
        CareSheet::from_der(&hex::decode(proof["sheet"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(signed.beneficiary.given_name, "L\u{e9}a");
    assert_eq!(signed.beneficiary.surname, "D'ARC");
    assert_eq!(
        signed.degraded_reason.as_deref(),
        Some("carte oubli\u{e9}e")
    );
}
