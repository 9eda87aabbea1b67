use super::*;
use crate::api::{BeneficiaryRequest, DegradedRequest, TiersPayantRequest};
use crate::cards::{CardType, CpsHolder, ExerciseMode, Situation};
use crate::fse::ReplacedPractitioner;

fn situation(index: u8, billing_number: &str, mode: ExerciseMode) -> Situation {
    Situation {
        index,
        billing_number: billing_number.into(),
        place: "Cabinet du Parc, 75011 Paris".into(),
        sector: 1,
        may_sign_invoice: true,
        may_sign_lot: true,
        mode,
    }
}

fn cps(situations: Vec<Situation>) -> CpsData {
    CpsData {
        holder: CpsHolder {
            card_type: CardType::Cps,
            serial: "CPS-0101".into(),
            national_id: "810000001015".into(),
            surname: "LEROY".into(),
            given_name: "Marc".into(),
            profession: "10".into(),
            specialty: "01".into(),
            valid_until: "20291231".into(),
        },
        situations,
        public_key: [0; 32],
        certificate: None,
    }
}

/// A GP's degraded sheet for Jean DUPONT, typed from the paper attestation.
fn degraded() -> FseCreateParams {
    FseCreateParams {
        act: Some(serde_json::from_value(serde_json::json!({"code": "G"})).unwrap()),
        tiers_payant: Some(TiersPayantRequest {
            amo: true,
            amc: false,
        }),
        degraded: Some(DegradedRequest {
            reason: "carte Vitale oubliée".into(),
            beneficiary: Some(BeneficiaryRequest {
                nir: "185057800608491".into(),
                surname: "DUPONT".into(),
                given_name: "Jean".into(),
                birth_date: "19850512".into(),
                rank: 1,
                organism: "017510001".into(),
            }),
        }),
        ..FseCreateParams::default()
    }
}

fn run(p: &FseCreateParams, card: &CpsData) -> Result<CareSheet, Refusal> {
    let cards = CardsRead {
        cps: card,
        cps_certificate: None,
        vitale: None,
        vitale_certificate: None,
    };
    let today = NaiveDate::from_ymd_opt(2026, 11, 16).unwrap();
    build(
        p,
        &cards,
        today,
        "20261116093000Z",
        rules::Tables::builtin(),
        &|_| rules::PfHistory::default(),
    )
}

fn liberal() -> CpsData {
    cps(vec![situation(0, "75123455", ExerciseMode::Liberal)])
}

fn typed(p: &mut FseCreateParams) -> &mut BeneficiaryRequest {
    p.degraded.as_mut().unwrap().beneficiary.as_mut().unwrap()
}

#[test]
fn the_sheet_carries_the_normalised_text() {
    let mut p = degraded();
    // NFD "Zoé" (e + U+0301), a typographic apostrophe, spaces around; reason in NFD too.
    typed(&mut p).given_name = " Zoe\u{301} ".into();
    typed(&mut p).surname = "D\u{2019}ARC".into();
    p.degraded.as_mut().unwrap().reason = "carte oublie\u{301}e".into();
    let sheet = run(&p, &liberal()).unwrap();
    assert_eq!(sheet.beneficiary.given_name, "Zo\u{e9}");
    assert_eq!(sheet.beneficiary.surname, "D'ARC");
    assert_eq!(sheet.degraded_reason.as_deref(), Some("carte oubli\u{e9}e"));
    // The DER (what is signed and sent) carries them too: é is C3 A9 in UTF-8.
    let der = sheet.body_to_der().unwrap();
    assert!(der.windows(4).any(|w| w == b"Zo\xc3\xa9"), "NFC in the DER");
    assert!(
        der.windows(5).any(|w| w == b"D'ARC"),
        "ASCII apostrophe in the DER"
    );
    // Already clean text is not copied.
    assert!(matches!(
        normalise_text(&degraded()).unwrap(),
        Cow::Borrowed(_)
    ));
}

#[test]
fn text_fields_are_refused_naming_field_and_character() {
    type Change = Box<dyn Fn(&mut FseCreateParams)>;
    let cases: Vec<(Change, &str, &str)> = vec![
        (
            Box::new(|p| typed(p).surname = "DUP\u{202e}ONT".into()),
            "degraded.beneficiary.surname",
            "character U+202E at position 4 ",
        ),
        (
            Box::new(|p| typed(p).given_name = "J".repeat(10_000)),
            "degraded.beneficiary.given_name",
            "is 10000 characters long: at most 80",
        ),
        (
            Box::new(|p| typed(p).given_name = "Jean\u{0}".into()),
            "degraded.beneficiary.given_name",
            "character U+0000 at position 5 ",
        ),
        (
            Box::new(|p| p.degraded.as_mut().unwrap().reason = "oubli \u{1b}[2J".into()),
            "degraded.reason",
            "character U+001B at position 7 ",
        ),
        (
            Box::new(|p| p.act.as_mut().unwrap().code = "G".repeat(5000)),
            "acts[0].code",
            "is 5000 characters long: at most 16",
        ),
        (
            Box::new(|p| p.act.as_mut().unwrap().modifiers = vec!["MEG".into(), "MEG".into()]),
            "acts[0].modifiers[1]",
            "modifier MEG is listed twice on the act",
        ),
        (
            Box::new(|p| p.act.as_mut().unwrap().modifiers = vec!["meg".into()]),
            "acts[0].modifiers[0]",
            "character 'm' (U+006D) at position 1 ",
        ),
        (
            Box::new(|p| p.idempotency_key = Some("visit 42".into())),
            "idempotency_key",
            "character U+0020 at position 6 ",
        ),
    ];
    for (change, field, reason) in cases {
        let mut p = degraded();
        change(&mut p);
        let r = run(&p, &liberal()).unwrap_err();
        assert_eq!(
            (r.kind, r.rule, r.field.as_str()),
            (RefusalKind::Invalid, BAD_REQUEST, field)
        );
        assert!(r.message.starts_with(reason), "{field}: {}", r.message);
    }
    // An empty reason is still DEGRADED_REASON_MISSING, in its place.
    let mut p = degraded();
    p.degraded.as_mut().unwrap().reason = "  ".into();
    assert_eq!(
        run(&p, &liberal()).unwrap_err().rule,
        DEGRADED_REASON_MISSING
    );
}

#[test]
fn nir_structure_and_rank_of_a_typed_beneficiary() {
    let mut p = degraded();
    // All zeros with their key: 97 − 0 = 97.
    typed(&mut p).nir = "000000000000097".into();
    let r = run(&p, &liberal()).unwrap_err();
    assert_eq!(
        (r.rule, r.field.as_str()),
        (NIR_INVALID, "degraded.beneficiary.nir")
    );
    assert!(
        r.message.contains("sex digit (character 1) is 0"),
        "{}",
        r.message
    );
    // Month 13 with its key (ids.rs: 6 + 66 = 72 → 25).
    typed(&mut p).nir = "185137800608425".into();
    let r = run(&p, &liberal()).unwrap_err();
    assert!(
        r.message.contains("birth month (characters 4-5) is 13"),
        "{}",
        r.message
    );
    typed(&mut p).nir = "185057800608400".into();
    assert_eq!(run(&p, &liberal()).unwrap_err().rule, NIR_KEY_MISMATCH);
    let mut p = degraded();
    typed(&mut p).rank = 0;
    let r = run(&p, &liberal()).unwrap_err();
    assert_eq!(
        (r.rule, r.field.as_str()),
        (BAD_REQUEST, "degraded.beneficiary.rank")
    );
    typed(&mut p).rank = 10;
    assert_eq!(
        run(&p, &liberal()).unwrap_err().field,
        "degraded.beneficiary.rank"
    );
    typed(&mut p).rank = 9;
    assert_eq!(run(&p, &liberal()).unwrap().beneficiary.rank, 9);
}

/// LEROY's card: situation 0 replaces the titular of 75123455, situation 1 is his salaried
/// post under 92123454.
fn remplacant() -> CpsData {
    cps(vec![
        situation(0, "75123455", ExerciseMode::Remplacant),
        situation(1, "92123454", ExerciseMode::Salarie),
    ])
}

fn replacing(billing_number: &str) -> FseCreateParams {
    let mut p = degraded();
    p.replaced = Some(ReplacedPractitioner {
        national_id: "810000000009".into(),
        surname: "MARTIN".into(),
        given_name: "Claire".into(),
        billing_number: billing_number.into(),
    });
    p
}

#[test]
fn a_remplacant_bills_under_the_titulars_number() {
    let sheet = run(&replacing("75123455"), &remplacant()).unwrap();
    assert_eq!(sheet.payee_billing_number(), "75123455");
    assert_eq!(
        sheet.practitioner.national_id, "810000001015",
        "who did the care"
    );
    let json = serde_json::to_value(&sheet).unwrap();
    assert_eq!(json["payee_billing_number"], "75123455");
    // Read back, the derived member is ignored.
    let back: CareSheet = serde_json::from_value(json).unwrap();
    assert_eq!(back, sheet);

    for (number, why) in [
        // 75123456: the Luhn sum of 7512345 with key 6 is 31, not a multiple of 10.
        ("75123456", "its last digit is not the Luhn key"),
        ("92123454", "is the remplaçant's own (situation 1)"),
        // 75123489 has its key (sum 50) but is another practitioner's.
        (
            "75123489",
            "the remplacement situation 0 on the CPS bills under 75123455",
        ),
    ] {
        let r = run(&replacing(number), &remplacant()).unwrap_err();
        assert_eq!(
            (r.rule, r.field.as_str()),
            (REPLACED_BILLING_NUMBER_INVALID, "replaced.billing_number"),
            "{number}"
        );
        assert!(r.message.contains(why), "{number}: {}", r.message);
    }
    let r = run(&replacing("7512345"), &remplacant()).unwrap_err();
    assert_eq!(
        (r.rule, r.field.as_str()),
        (BAD_REQUEST, "replaced.billing_number")
    );
    let mut p = replacing("75123455");
    p.replaced.as_mut().unwrap().surname = "MARTIN\u{1f600}".into();
    let r = run(&p, &remplacant()).unwrap_err();
    assert_eq!(
        (r.rule, r.field.as_str()),
        (BAD_REQUEST, "replaced.surname")
    );
    p.replaced.as_mut().unwrap().surname = "MARTIN".into();
    p.replaced.as_mut().unwrap().given_name = String::new();
    assert_eq!(
        run(&p, &remplacant()).unwrap_err().field,
        "replaced.given_name"
    );
}

#[test]
fn a_titulars_sheet_is_paid_on_his_own_number() {
    let sheet = run(&degraded(), &liberal()).unwrap();
    assert_eq!(
        sheet.payee_billing_number(),
        sheet.practitioner.billing_number
    );
}

#[test]
fn the_prepared_request_names_the_history_it_needs() {
    let p = degraded();
    let card = liberal();
    let cards = CardsRead {
        cps: &card,
        cps_certificate: None,
        vitale: None,
        vitale_certificate: None,
    };
    let today = NaiveDate::from_ymd_opt(2026, 11, 16).unwrap();
    let prepared = Request::new(&p).unwrap().prepare(&cards, today).unwrap();
    // NIR, birth date and rank of the typed beneficiary, joined by colons.
    assert_eq!(prepared.history_key(), "185057800608491:19850512:1");
    assert_eq!(prepared.professional(), "810000001015");
    let sheet = prepared
        .make_sheet("20261116093000Z", rules::Tables::builtin(), &|_| {
            rules::PfHistory::default()
        })
        .unwrap();
    assert_eq!(
        history_key(&sheet.beneficiary),
        "185057800608491:19850512:1"
    );
    // `act` and `acts` together are refused before the cards are read.
    let mut both = degraded();
    both.acts = vec![both.act.clone().unwrap()];
    assert_eq!(Request::new(&both).unwrap_err().field, "act");
}
