//! Every refusal of `fse.create` reached through fsed's Unix socket, over
//! the real pcscd + vpcd with the simulated cards swapped in at run time:
//! each answer carries its JSON-RPC code, its stable rule code
//! (`data.rule`) and the field at fault (`data.field`). Then the
//! participation forfaitaire's daily cap, kept in the queue, holds across
//! sheets, across a restart of fsed and across requests made at once. The vpcd slots are shared: one test
//! function does it all, in order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{order, serials, wait_for, Rpc};
use serde_json::{json, Value};

/// Puts `profile` in `slot` and waits until fsed lists the card `serial` (`None`: slot emptied).
fn put(control: &Path, rpc: &mut Rpc, slot: &str, profile: Option<&str>, serial: Option<&str>) {
    let kind_listed = |rpc: &mut Rpc| -> Vec<String> {
        serials(rpc)
            .into_iter()
            .filter(|(kind, _)| {
                slot == "vitale" && kind == "vitale" || slot == "cps" && kind != "vitale"
            })
            .map(|(_, s)| s)
            .collect()
    };
    match profile {
        Some(p) if kind_listed(rpc).is_empty() => {
            order(control, &["insert", "--slot", slot, "--profile", p]);
        }
        Some(p) => {
            order(
                control,
                &["swap", "--slot", slot, "--profile", p, "--gap-ms", "1000"],
            );
        }
        None => {
            order(control, &["remove", "--slot", slot]);
        }
    }
    wait_for(
        &format!("{slot} {profile:?}"),
        Duration::from_secs(20),
        || {
            let listed = kind_listed(rpc);
            match serial {
                Some(s) => listed.iter().any(|x| x == s).then_some(()),
                None => listed.is_empty().then_some(()),
            }
        },
    );
}

fn day(offset: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(offset))
        .format("%Y%m%d")
        .to_string()
}

/// The rule codes the socket answered with, to check that every one was reached.
static SEEN: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Calls `fse.create` and checks the refusal: API error name, rule code, field.
fn refused(rpc: &mut Rpc, params: Value, name: &str, rule: Option<&str>, field: &str) {
    let r = rpc.call("fse.create", params.clone());
    let e = &r["error"];
    assert_eq!(e["data"]["name"], json!(name), "{params} → {r}");
    assert_eq!(e["data"]["field"], json!(field), "{params} → {r}");
    if let Some(rule) = rule {
        assert_eq!(e["data"]["rule"], json!(rule), "{params} → {r}");
        SEEN.lock().unwrap().insert(rule.to_string());
    }
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
}

const MARTIN: &str = "810000000009";

fn jean() -> Value {
    json!({"nir": "185057800608491", "surname": "DUPONT", "given_name": "Jean",
           "birth_date": "19850512", "organism": "017510001"})
}

#[test]
fn every_refusal_reaches_the_socket_with_its_code_and_field() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let (_sim, control) = common::start_fast_cards(dir.path(), &[]);
    let (mut fsed, mut rpc) = common::start_fsed(dir.path(), &["--transport", "spool"]);
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let g = json!({"code": "G"});

    // Dr MARTIN (sector 1) and the DUPONT family's card.
    let rule_cases = request_rule_cases().into_iter().chain(care_rule_cases());
    for (params, name, rule, field) in rule_cases {
        refused(&mut rpc, params, name, Some(rule), field);
    }
    degraded_sheet_and_keyed_retry(&control, &mut rpc);
    vitale_card_refusals(&control, &mut rpc);
    cps_card_refusals(&control, &mut rpc);

    // The participation forfaitaire's daily cap (4 participations with one doctor, 4 × 2 €)
    // holds across sheets, from the queue (Nadia LAMBERT's card is in the Vitale slot).
    put(
        &control,
        &mut rpc,
        "cps",
        Some("cps-medecin-generaliste"),
        Some("CPS-0001"),
    );
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let create = |rpc: &mut Rpc| -> (i64, u64) {
        let s = rpc.ok("fse.create", json!({"act": g}));
        (
            s["id"].as_i64().unwrap(),
            s["sheet"]["amounts"]["pf_cents"].as_u64().unwrap(),
        )
    };
    let pf = |rpc: &mut Rpc| create(rpc).1;
    let (first, first_pf) = create(&mut rpc);
    let next_four = [pf(&mut rpc), pf(&mut rpc), pf(&mut rpc), pf(&mut rpc)];
    assert_eq!((first_pf, next_four), (200, [200, 200, 200, 0]));
    // A cancelled sheet's participation no longer counts; it cannot be cancelled twice.
    let cancelled = rpc.ok("fse.cancel", json!({"id": first, "reason": "patient left"}));
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    let r = rpc.call("fse.cancel", json!({"id": first, "reason": "again"}));
    assert_eq!(r["error"]["data"]["rule"], "NOT_CANCELLABLE", "{r}");
    let r = rpc.call("fse.cancel", json!({"id": 999_999, "reason": "x"}));
    assert_eq!(r["error"]["data"]["name"], "NOT_FOUND", "{r}");
    let r = rpc.call("fse.cancel", json!({"id": first, "reason": " "}));
    assert_eq!(r["error"]["data"]["field"], "reason", "{r}");
    assert_eq!(pf(&mut rpc), 200);
    // … and across a restart: the history is in the SQLite file.
    assert!(fsed.terminate().success());
    drop(rpc);
    let (_fsed, mut rpc) = common::start_fsed(dir.path(), &["--transport", "spool"]);
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    assert_eq!(pf(&mut rpc), 0);

    // Many requests at once for the same beneficiary, doctor and day: each is priced on the
    // history it read, and the insert refuses those another sheet outran, which are priced
    // again; the day's cap still holds: 4 participations of 2 €, 8 €, none more.
    let socket = dir.path().join("fsed.sock");
    let yesterday = day(-1);
    let pfs: Vec<u64> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..12)
            .map(|_| {
                s.spawn(|| {
                    let mut c = Rpc::connect(&socket, Duration::from_secs(10));
                    let r = c.ok(
                        "fse.create",
                        json!({"act": {"code": "G", "date": yesterday}}),
                    );
                    r["sheet"]["amounts"]["pf_cents"].as_u64().unwrap()
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(pfs.iter().sum::<u64>(), 800, "{pfs:?}");
    assert_eq!(pfs.iter().filter(|c| **c == 200).count(), 4, "{pfs:?}");

    let seen = SEEN.lock().unwrap();
    let missed: Vec<&&str> = fse_formats::build::ALL_RULES
        .iter()
        .filter(|r| !seen.contains(**r))
        .collect();
    assert!(
        missed.is_empty(),
        "rules never reached through the socket: {missed:?}"
    );
}

/// The refusals of a request's shape, its acts and their dates, as (params, error name, rule,
/// field).
fn request_rule_cases() -> Vec<(Value, &'static str, &'static str, &'static str)> {
    let g = json!({"code": "G"});
    let (v, r) = ("INVALID_PARAMS", "RULE_VIOLATION");
    vec![
        (json!({}), v, "BAD_REQUEST", "acts"),
        (json!({"act": g, "acts": [g]}), v, "BAD_REQUEST", "act"),
        (
            json!({"act": {"code": "G", "date": "2026-11-16"}}),
            v,
            "BAD_REQUEST",
            "acts[0].date",
        ),
        (
            json!({"act": g, "situation": 5}),
            v,
            "BAD_REQUEST",
            "situation",
        ),
        (
            json!({"act": g, "beneficiary": 7}),
            v,
            "BAD_REQUEST",
            "beneficiary",
        ),
        (
            json!({"act": {"code": "XYZ"}}),
            r,
            "UNKNOWN_ACT",
            "acts[0].code",
        ),
        // A series reaching back before the table's first price of G (1 May 2017), typed in
        // degraded mode (the card's rights start in 2025): the date is named, not the act.
        (
            json!({"acts": [{"code": "G", "date": "20170420"}, g], "tiers_payant": {"amo": true},
                   "degraded": {"reason": "carte oubliée", "beneficiary": jean()}}),
            r,
            "TARIFF_DATE_UNKNOWN",
            "acts[0].date",
        ),
        (
            json!({"acts": [g, {"code": "AMI"}]}),
            r,
            "ACT_NOT_ALLOWED_FOR_PROFESSION",
            "acts[1].code",
        ),
        (
            json!({"act": {"code": "G", "quantity": 0}}),
            r,
            "BAD_ACT",
            "acts[0].quantity",
        ),
        (
            json!({"act": {"code": "G", "modifiers": ["MCI"]}}),
            r,
            "UNKNOWN_MODIFIER",
            "acts[0].modifiers[0]",
        ),
        (
            json!({"act": {"code": "G", "date": day(1)}}),
            r,
            "ACT_DATE_IN_FUTURE",
            "acts[0].date",
        ),
        (
            json!({"act": {"code": "G", "date": day(-30)}}),
            r,
            "PAST_DEADLINE",
            "acts[0].date",
        ),
        (
            json!({"act": {"code": "G", "date": "19800101"}}),
            r,
            "ACT_DATE_BEFORE_BIRTH",
            "acts[0].date",
        ),
    ]
}

/// The refusals of a sheet's care context (ALD, AT/MP, care path, tiers payant, amounts, the
/// replaced practitioner, degraded mode), as (params, error name, rule, field).
fn care_rule_cases() -> Vec<(Value, &'static str, &'static str, &'static str)> {
    let g = json!({"code": "G"});
    let (v, r) = ("INVALID_PARAMS", "RULE_VIOLATION");
    vec![
        (json!({"act": g, "ald": true}), r, "ALD_NOT_OPEN", "ald"),
        (
            json!({"act": g, "at_mp": {"date": day(1), "number": "AT1"}}),
            r,
            "AT_MP_INVALID",
            "at_mp.date",
        ),
        (
            json!({"act": g, "at_mp": {"date": day(-3), "number": ""}}),
            r,
            "AT_MP_INVALID",
            "at_mp.number",
        ),
        (
            json!({"act": g, "care_path": "not_applicable"}),
            r,
            "CARE_PATH_INVALID",
            "care_path",
        ),
        (
            json!({"act": g, "tiers_payant": {"amo": true, "amc": true}}),
            r,
            "AMC_TIERS_PAYANT_UNAVAILABLE",
            "tiers_payant.amc",
        ),
        (
            json!({"act": {"code": "G", "excess_cents": 1000}}),
            r,
            "EXCESS_NOT_ALLOWED",
            "acts[0].excess_cents",
        ),
        (
            json!({"act": g, "expected": {"amo_cents": 2100}}),
            r,
            "AMOUNTS_INCONSISTENT",
            "expected.amo_cents",
        ),
        (
            json!({"act": g, "replaced": {"national_id": "810000000207", "surname": "ROUSSEAU", "given_name": "Paul", "billing_number": "75123489"}}),
            r,
            "REPLACED_UNEXPECTED",
            "replaced",
        ),
        (
            json!({"act": g, "tiers_payant": {"amo": true}, "degraded": {"reason": "carte oubliée", "beneficiary": {"nir": "185057800608400", "surname": "DUPONT", "given_name": "Jean", "birth_date": "19850512", "organism": "017510001"}}}),
            r,
            "NIR_KEY_MISMATCH",
            "degraded.beneficiary.nir",
        ),
        (
            // 13 zeros give the key 97 − 0 = 97: the key is right, the structure is not.
            json!({"act": g, "tiers_payant": {"amo": true}, "degraded": {"reason": "carte oubliée", "beneficiary": {"nir": "000000000000097", "surname": "DUPONT", "given_name": "Jean", "birth_date": "19850512", "organism": "017510001"}}}),
            r,
            "NIR_INVALID",
            "degraded.beneficiary.nir",
        ),
        (
            json!({"act": g, "tiers_payant": {"amo": true}, "degraded": {"reason": "carte oubliée", "beneficiary": {"nir": "185057800608491", "surname": "DUP\u{202e}ONT", "given_name": "Jean", "birth_date": "19850512", "organism": "017510001"}}}),
            v,
            "BAD_REQUEST",
            "degraded.beneficiary.surname",
        ),
        (
            json!({"act": g, "tiers_payant": {"amo": true}, "degraded": {"reason": "", "beneficiary": jean()}}),
            r,
            "DEGRADED_REASON_MISSING",
            "degraded.reason",
        ),
        (
            json!({"act": g, "degraded": {"reason": "carte oubliée", "beneficiary": jean()}}),
            r,
            "DEGRADED_OUTSIDE_TIERS_PAYANT",
            "degraded",
        ),
        (
            json!({"act": g, "tiers_payant": {"amo": true}, "degraded": {"reason": "carte oubliée"}}),
            v,
            "BAD_REQUEST",
            "degraded.beneficiary",
        ),
    ]
}

/// A degraded sheet needs no Vitale card; a secured one does. A retry answers the sheet
/// already made with its key, whatever the cards are now.
fn degraded_sheet_and_keyed_retry(control: &Path, rpc: &mut Rpc) {
    let g = json!({"code": "G"});
    // A degraded sheet needs no Vitale card; a secured one does.
    put(control, rpc, "vitale", None, None);
    let degraded = rpc.ok(
        "fse.create",
        json!({"act": g, "tiers_payant": {"amo": true}, "degraded": {"reason": "carte oubliée", "beneficiary": jean()}}),
    );
    assert_eq!(degraded["sheet"]["mode"], "degraded");
    assert_eq!(degraded["sheet"]["degraded_reason"], "carte oubliée");
    // A retry answers the sheet already made with its key, whatever the cards are now.
    let keyed = json!({"act": g, "tiers_payant": {"amo": true}, "idempotency_key": "retry-1",
        "degraded": {"reason": "carte oubliée", "beneficiary": jean()}});
    let first = rpc.ok("fse.create", keyed.clone());
    let cps_serial = first["sheet"]["practitioner"]["cps_serial"].clone();
    put(control, rpc, "cps", None, None);
    let again = rpc.ok("fse.create", keyed.clone());
    assert_eq!(
        (again["id"].clone(), again["number"].clone()),
        (first["id"].clone(), first["number"].clone())
    );
    let mut unkeyed = keyed;
    unkeyed["idempotency_key"] = json!("retry-2");
    refused(rpc, unkeyed, "CARD_ABSENT", None, "cps");
    put(
        control,
        rpc,
        "cps",
        Some("cps-medecin-generaliste"),
        cps_serial.as_str(),
    );
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    refused(
        rpc,
        json!({"act": g}),
        "CARD_ABSENT",
        Some("VITALE_ABSENT"),
        "vitale",
    );
}

/// Vitale cards: closed rights, CSS (compulsory tiers payant), opposition.
fn vitale_card_refusals(control: &Path, rpc: &mut Rpc) {
    let g = json!({"code": "G"});
    let (r, c) = ("RULE_VIOLATION", "CARD_NOT_ALLOWED");
    // Vitale cards: closed rights, CSS (compulsory tiers payant), opposition.
    put(
        control,
        rpc,
        "vitale",
        Some("vitale-droits-expires"),
        Some("VIT-0005"),
    );
    refused(
        rpc,
        json!({"act": g}),
        r,
        Some("RIGHTS_CLOSED"),
        "beneficiary.rights",
    );
    put(control, rpc, "vitale", Some("vitale-css"), Some("VIT-0012"));
    refused(
        rpc,
        json!({"act": g, "tiers_payant": {"amo": false}}),
        r,
        Some("TIERS_PAYANT_REQUIRED"),
        "tiers_payant.amo",
    );
    put(
        control,
        rpc,
        "vitale",
        Some("vitale-opposition"),
        Some("VIT-0666"),
    );
    refused(rpc, json!({"act": g}), c, Some("VITALE_OPPOSED"), "vitale");
    put(
        control,
        rpc,
        "vitale",
        Some("vitale-adulte"),
        Some("VIT-0002"),
    );
}

/// The CPS cards' refusals, as (profile, serial, params, error name, rule, field).
fn cps_cases() -> Vec<(
    &'static str,
    &'static str,
    Value,
    &'static str,
    &'static str,
    &'static str,
)> {
    let g = json!({"code": "G"});
    let (r, c) = ("RULE_VIOLATION", "CARD_NOT_ALLOWED");
    vec![
        (
            "cpe-secretaire",
            "CPE-0001",
            json!({"act": g}),
            c,
            "STAFF_CARD",
            "cps",
        ),
        (
            "cps-expired",
            "CPS-0300",
            json!({"act": g}),
            c,
            "CARD_EXPIRED",
            "cps",
        ),
        (
            "cps-revoked",
            "CPS-0500",
            json!({"act": g}),
            c,
            "CERTIFICATE_REFUSED",
            "cps",
        ),
        (
            "cps-remplacant",
            "CPS-0101",
            json!({"act": g}),
            r,
            "REPLACED_MISSING",
            "replaced",
        ),
        (
            // 75123456: Luhn sum 31 (6, 1, 4, 6, 2, 2, 5, 5), not a multiple of 10.
            "cps-remplacant",
            "CPS-0101",
            json!({"act": g, "replaced": {"national_id": MARTIN, "surname": "MARTIN", "given_name": "Claire", "billing_number": "75123456"}}),
            r,
            "REPLACED_BILLING_NUMBER_INVALID",
            "replaced.billing_number",
        ),
        (
            "cps-medecin-specialiste",
            "CPS-0020",
            json!({"act": {"code": "CS"}, "situation": 1}),
            c,
            "SITUATION_MAY_NOT_SIGN",
            "situation",
        ),
        (
            "cps-infirmier",
            "CPS-0060",
            json!({"act": {"code": "AMI"}}),
            r,
            "PRESCRIPTION_MISSING",
            "acts[0].prescriber",
        ),
        (
            "cps-infirmier",
            "CPS-0060",
            json!({"act": {"code": "AMI", "prescriber": {"national_id": "810000000001", "date": day(-2)}}}),
            r,
            "PRESCRIBER_INVALID",
            "acts[0].prescriber.national_id",
        ),
        (
            "cps-infirmier",
            "CPS-0060",
            json!({"act": {"code": "AMI", "prescriber": {"national_id": MARTIN, "date": day(1)}}}),
            r,
            "PRESCRIBER_INVALID",
            "acts[0].prescriber.date",
        ),
        (
            "cps-infirmier",
            "CPS-0060",
            json!({"act": {"code": "AMI", "prescriber": {"national_id": MARTIN, "date": day(-2)}}, "care_path": "treating"}),
            r,
            "CARE_PATH_INVALID",
            "care_path",
        ),
    ]
}

/// CPS cards, each with its PIN verified; then the nurse's sheet once right.
fn cps_card_refusals(control: &Path, rpc: &mut Rpc) {
    let cps_cases = cps_cases();
    let mut current = String::new();
    for (profile, serial, params, name, rule, field) in cps_cases {
        if current != serial {
            put(control, rpc, "cps", Some(profile), Some(serial));
            rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
            current = serial.to_string();
        }
        refused(rpc, params, name, Some(rule), field);
    }
    // The nurse's sheet once right: several acts, coefficients, prescriber, tiers payant.
    let nurse = rpc.ok(
        "fse.create",
        json!({"acts": [{"code": "AMI", "prescriber": {"national_id": MARTIN, "date": day(-2)}},
                        {"code": "AMI", "coefficient": 200, "prescriber": {"national_id": MARTIN, "date": day(-2)}}],
               "tiers_payant": {"amo": true}}),
    );
    assert_eq!(nurse["sheet"]["amounts"]["total_cents"], 945, "{nurse}");
    assert_eq!(nurse["sheet"]["amounts"]["amo_cents"], 567, "{nurse}");
    assert_eq!(nurse["sheet"]["amounts"]["due_cents"], 378, "{nurse}");
    assert_eq!(nurse["sheet"]["care_path"], "not_applicable");
}
