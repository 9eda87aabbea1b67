//! Golden care sheets: each directory of `tests/golden/` is one realistic
//! case — the cards in the readers (simulator profiles), the day, the
//! participation history and the `fse.create` request — and the sheet fsed
//! must make of it: `sheet.json` (its JSON rendering), `sheet.der.hex` (its
//! DER, proof of presence included), and `dre.json` / `dre.der.hex` when the
//! AMC is paid directly; or `error.json` for a refused request.
//!
//! The history is the beneficiary's participation already withheld, a line per
//! date and professional: `{"date": "YYYYMMDD", "practitioner": "8…", "acts": 4,
//! "cents": 800}` (`practitioner` and `acts` null: unknown, as rows kept from
//! before fsed recorded them).
//!
//! A case with `app` in place of `vitale` is an app sheet: the simulator's Vitale app makes
//! its token (`profile`, `beneficiary`, `challenge`, `issued_at`, `lifetime_secs`) for the
//! CPS holder, the sheet is built on the beneficiary it vouches for and carries it.
//!
//! Each `case.json` also carries `expect`: the figures worked out by hand
//! (amounts, rate, or the refusal's rule and field), checked apart from the
//! recorded files. `FSED_GOLDEN_BLESS=1 cargo test -p fsed_tests --test
//! golden` rewrites the recorded files after a deliberate change; review
//! the diff before committing it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use fse_formats::api::FseCreateParams;
use fse_formats::build::{self, CardsRead, Refusal};
use fse_formats::cards::{self, CpsData, VitaleData};
use fse_formats::dre::Dre;
use fse_formats::fse::{CareSheet, Mode, Presence};
use fse_formats::pki::{CertCheck, TrustStore};
use fse_formats::rules::{self, PfEntry, PfHistory};
use fse_simulator::card::InProcess;
use fse_simulator::profiles::Profile;
use serde_json::{json, Value};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

fn trust(now: i64) -> TrustStore {
    let dir = tempfile::tempdir().unwrap();
    fse_simulator::pki::TestPki::shared()
        .unwrap()
        .write(
            dir.path(),
            time::OffsetDateTime::from_unix_timestamp(now).unwrap(),
        )
        .unwrap();
    let mut store = TrustStore::new();
    for f in ["root.pem", "ca.pem"] {
        store
            .add_certificates(&std::fs::read(dir.path().join(f)).unwrap())
            .unwrap();
    }
    store
        .add_crls(&std::fs::read(dir.path().join("crl.pem")).unwrap())
        .unwrap();
    store
}

/// What one case produced.
enum Outcome {
    Sheet(Box<CareSheet>, Box<Option<Dre>>),
    Refused(Refusal),
}

fn run_case(case: &Value, store: &TrustStore) -> Outcome {
    let today = build::parse_date(case["today"].as_str().unwrap()).unwrap();
    let now = today.and_hms_opt(9, 0, 0).unwrap().and_utc().timestamp();
    let request: FseCreateParams = serde_json::from_value(case["request"].clone()).unwrap();

    let Profile::Cps(cps_profile) = Profile::load(case["cps"].as_str().unwrap()).unwrap() else {
        panic!("`cps` names a CPS profile");
    };
    let mut cps_card = cps_profile.card().unwrap();
    let cps: CpsData = cards::read_cps(&mut InProcess(&mut cps_card)).unwrap();
    let cps_check: CertCheck =
        store.check(cps.certificate.as_deref().unwrap(), &cps.public_key, now);
    let mut vitale_card = match case["vitale"].as_str() {
        Some(name) => match Profile::load(name).unwrap() {
            Profile::Vitale(v) => Some(v.card().unwrap()),
            _ => panic!("`vitale` names a Vitale profile"),
        },
        None => None,
    };
    // The Vitale app in place of a card: its token, made for the CPS holder.
    let app = case
        .get("app")
        .map(|a| app_token(a, &cps.holder.national_id));
    let mut vitale: Option<VitaleData> = match &app {
        Some(token) => Some(token.vitale_data()),
        None => vitale_card
            .as_mut()
            .map(|c| cards::read_vitale(&mut InProcess(c)).unwrap()),
    };
    let vitale_check = vitale
        .as_ref()
        .filter(|_| app.is_none())
        .map(|v| store.check(v.certificate.as_deref().unwrap(), &v.public_key, now));

    let history: Vec<PfEntry> = case["history"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| PfEntry {
                    date: build::parse_date(e["date"].as_str().unwrap()).unwrap(),
                    professional: e["practitioner"].as_str().map(str::to_string),
                    acts: e["acts"].as_u64().map(|n| u32::try_from(n).unwrap()),
                    cents: e["cents"].as_u64().unwrap(),
                })
                .collect()
        })
        .unwrap_or_default();
    // Rights online: the insurer simulator's signed answer, checked as fsed checks it, laid
    // over the card's before the sheet is built.
    let rights = case.get("rights_online").map(|r| {
        online_rights(
            r["answered_at"].as_str().unwrap(),
            vitale.as_mut().unwrap(),
            request.beneficiary,
            &cps.holder.national_id,
            store,
        )
    });
    let read = CardsRead {
        cps: &cps,
        cps_certificate: Some(&cps_check),
        vitale: vitale.as_ref(),
        vitale_certificate: vitale_check.as_ref(),
    };
    let built = build::build(
        &request,
        &read,
        today,
        case["created_at"].as_str().unwrap(),
        rules::Tables::builtin(),
        &|d| -> PfHistory { build::history_on(&history, &cps.holder.national_id, d) },
    );
    let mut sheet = match built {
        Ok(s) => s,
        Err(r) => return Outcome::Refused(r),
    };
    sheet.number = case["number"].as_u64().unwrap();
    sheet.rights = rights;
    if let Some(token) = &app {
        token
            .verify(
                store,
                &fse_formats::app::Expected {
                    practitioner_id: &cps.holder.national_id,
                    challenge: Some(&token.body.challenge),
                    now,
                    max_lifetime_secs: fse_formats::app::DEFAULT_MAX_LIFETIME_SECS,
                },
            )
            .unwrap();
        token.vouch(&mut sheet).unwrap();
    } else if sheet.mode == Mode::Secured {
        let v = vitale.as_ref().unwrap();
        let challenge = sheet.presence_challenge().unwrap();
        let sig =
            cards::vitale_authenticate(&mut InProcess(vitale_card.as_mut().unwrap()), &challenge)
                .unwrap();
        sheet.presence = Some(Presence {
            vitale_serial: v.serial.clone(),
            public_key: hex::encode(v.public_key),
            signature: hex::encode(sig),
        });
    }
    let dre = Dre::from_sheet(&sheet).unwrap();
    Outcome::Sheet(Box::new(sheet), Box::new(dre))
}

/// The token of `app` (`{"profile", "beneficiary", "challenge": hex, "issued_at",
/// "lifetime_secs"}`) made by the simulator's Vitale app for `practitioner`: the same bytes on
/// every run (test keys, Ed25519 signatures are deterministic).
fn app_token(app: &Value, practitioner: &str) -> fse_formats::app::AppToken {
    let holder = fse_simulator::app::App::from_profile(
        app["profile"].as_str().unwrap(),
        usize::try_from(app["beneficiary"].as_u64().unwrap()).unwrap(),
        false,
    )
    .unwrap();
    let challenge: [u8; 16] = hex::decode(app["challenge"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let issued = fse_formats::app::parse_time(app["issued_at"].as_str().unwrap()).unwrap();
    holder
        .token(
            challenge,
            practitioner,
            issued,
            app["lifetime_secs"].as_i64().unwrap(),
        )
        .unwrap()
}

/// The insurer simulator's answer for the beneficiary at `index` of `vitale`, answered at
/// `answered_at` (`YYYYMMDDHHMMSSZ`), checked against `store` as fsed checks it and laid over
/// `vitale`; the sheet's record of it.
fn online_rights(
    answered_at: &str,
    vitale: &mut VitaleData,
    index: usize,
    practitioner: &str,
    store: &TrustStore,
) -> fse_formats::fse::RightsOrigin {
    use fse_formats::rights::{check_answer, stamp_seconds, RightsRequest};
    use fse_simulator::insurer::rights::{answer_request, sign_answer};
    use sha2::Digest;
    let b = &vitale.beneficiaries[index];
    let request = RightsRequest {
        request_id: "golden".into(),
        nir: b.nir.clone(),
        birth_date: b.birth_date.clone(),
        rank: b.rank,
        practitioner_id: practitioner.into(),
        asked_at: answered_at.into(),
    };
    let at = stamp_seconds(answered_at).unwrap();
    let knobs = fse_simulator::insurer::RightsKnobs::default();
    let answer = answer_request(
        &request,
        &knobs,
        chrono::DateTime::from_timestamp(at, 0).unwrap(),
    );
    let der = sign_answer(answer, &knobs).unwrap();
    let signed = fse_formats::ack::SignedReturn::from_der(&der).unwrap();
    let answer = check_answer(&signed, &request, store, at, 86_400).unwrap();
    answer.overlay(vitale, index);
    fse_formats::fse::RightsOrigin {
        source: fse_formats::fse::RightsSource::Online,
        read_at: answered_at.into(),
        answer_digest: Some(hex::encode(sha2::Sha256::digest(&der))),
        fallback: None,
    }
}

/// Compares `text` with the recorded file, or records it when blessing.
fn recorded(dir: &Path, file: &str, text: &str, bless: bool, failures: &mut Vec<String>) {
    let path = dir.join(file);
    if bless {
        std::fs::write(&path, text).unwrap();
        return;
    }
    match std::fs::read_to_string(&path) {
        Ok(old) if old == text => {}
        Ok(old) => failures.push(format!(
            "{}: differs from what fsed makes\n--- recorded\n{old}\n--- made\n{text}",
            path.display()
        )),
        Err(e) => failures.push(format!("{}: {e}", path.display())),
    }
}

fn absent(dir: &Path, file: &str, bless: bool, failures: &mut Vec<String>) {
    let path = dir.join(file);
    if path.exists() {
        if bless {
            std::fs::remove_file(&path).unwrap();
        } else {
            failures.push(format!("{}: recorded, but fsed makes none", path.display()));
        }
    }
}

/// Checks the figures worked out by hand in `expect`.
fn check_expect(name: &str, expect: &Value, outcome: &Outcome, failures: &mut Vec<String>) {
    let mut fail = |what: String| failures.push(format!("{name}: {what}"));
    match outcome {
        Outcome::Refused(r) => {
            if expect["rule"] != json!(r.rule) || expect["field"] != json!(r.field) {
                fail(format!(
                    "refused with {} on {} ({}), expected {} on {}",
                    r.rule, r.field, r.message, expect["rule"], expect["field"]
                ));
            }
        }
        Outcome::Sheet(sheet, dre) => {
            if expect.get("rule").is_some() {
                fail(format!("accepted, expected refusal {}", expect["rule"]));
                return;
            }
            let amounts = serde_json::to_value(&sheet.amounts).unwrap();
            let sheet_json = serde_json::to_value(sheet.as_ref()).unwrap();
            for (key, want) in expect.as_object().unwrap() {
                let got = match key.as_str() {
                    "rates" => json!(sheet.acts.iter().map(|a| a.rate).collect::<Vec<_>>()),
                    "dre_amc_cents" => json!(dre.as_ref().as_ref().map(|d| d.amc_cents)),
                    "care_path"
                    | "mode"
                    | "deadline"
                    | "tiers_payant"
                    | "cover"
                    | "payee_billing_number"
                    | "beneficiary"
                    | "replaced"
                    | "rights_source"
                    | "degraded_reason" => sheet_json[key].clone(),
                    _ => amounts[key].clone(),
                };
                if &got != want {
                    fail(format!("{key} = {got}, worked out by hand: {want}"));
                }
            }
        }
    }
}

/// The invariants every accepted sheet keeps, whatever the case.
fn check_invariants(name: &str, sheet: &CareSheet, dre: &Option<Dre>) {
    let a = &sheet.amounts;
    assert_eq!(a.total_cents, a.base_cents + a.excess_cents, "{name}");
    assert_eq!(
        a.amo_cents + a.amc_cents + a.patient_cents,
        a.total_cents,
        "{name}: the shares add up to the total"
    );
    let acts_base: u64 = sheet.acts.iter().map(|x| x.base_cents).sum();
    let acts_pf: u64 = sheet.acts.iter().map(|x| x.pf_cents).sum();
    assert_eq!((acts_base, acts_pf), (a.base_cents, a.pf_cents), "{name}");
    let der = sheet.to_der().unwrap();
    assert_eq!(&CareSheet::from_der(&der).unwrap(), sheet, "{name}");
    sheet.verify_presence().unwrap();
    // What an insurer re-pricing the sheet finds: the same shares.
    fse_formats::rules::check_shares(sheet, rules::Tables::builtin())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    if let Some(d) = dre {
        assert_eq!(Dre::from_der(&d.to_der().unwrap()).unwrap(), *d, "{name}");
        let per_act: u64 = d.acts.iter().map(|x| x.amc_cents).sum();
        assert_eq!(per_act, d.amc_cents, "{name}: the DRE's acts add up");
    }
}

#[test]
fn golden_cases_make_the_recorded_sheets() {
    let bless = std::env::var_os("FSED_GOLDEN_BLESS").is_some();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("case.json").exists())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 30,
        "{} golden cases, at least 30 expected",
        dirs.len()
    );
    let store = trust(1_795_000_000);
    let mut failures = Vec::new();
    let (mut sheets, mut refusals, mut dres) = (0, 0, 0);
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let case: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap())
                .unwrap_or_else(|e| panic!("{name}/case.json: {e}"));
        let outcome = run_case(&case, &store);
        check_expect(&name, &case["expect"], &outcome, &mut failures);
        match &outcome {
            Outcome::Sheet(sheet, dre) => {
                sheets += 1;
                check_invariants(&name, sheet, dre);
                let json = serde_json::to_string_pretty(sheet.as_ref()).unwrap() + "\n";
                recorded(dir, "sheet.json", &json, bless, &mut failures);
                let hex = hex::encode(sheet.to_der().unwrap()) + "\n";
                recorded(dir, "sheet.der.hex", &hex, bless, &mut failures);
                absent(dir, "error.json", bless, &mut failures);
                match dre.as_ref() {
                    Some(d) => {
                        dres += 1;
                        let json = serde_json::to_string_pretty(d).unwrap() + "\n";
                        recorded(dir, "dre.json", &json, bless, &mut failures);
                        let hex = hex::encode(d.to_der().unwrap()) + "\n";
                        recorded(dir, "dre.der.hex", &hex, bless, &mut failures);
                    }
                    None => {
                        absent(dir, "dre.json", bless, &mut failures);
                        absent(dir, "dre.der.hex", bless, &mut failures);
                    }
                }
            }
            Outcome::Refused(r) => {
                refusals += 1;
                let json = serde_json::to_string_pretty(&json!({
                    "rule": r.rule,
                    "field": r.field,
                    "message": r.message,
                }))
                .unwrap()
                    + "\n";
                recorded(dir, "error.json", &json, bless, &mut failures);
                for f in ["sheet.json", "sheet.der.hex", "dre.json", "dre.der.hex"] {
                    absent(dir, f, bless, &mut failures);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        sheets >= 15 && refusals >= 10 && dres >= 1,
        "{sheets} sheets, {refusals} refusals, {dres} DREs"
    );
}
