use super::*;
use fse_formats::app::{parse_time, Expected, DEFAULT_MAX_LIFETIME_SECS};
use fse_formats::pki::TrustStore;

const PRACTITIONER: &str = "810001234567";
const CHALLENGE: [u8; 16] = [0x5A; 16];

fn trust() -> TrustStore {
    let pki = TestPki::new().unwrap();
    let mut store = TrustStore::new();
    store.add_certificates(pki.root_pem().as_bytes()).unwrap();
    store.add_certificates(pki.ca_pem().as_bytes()).unwrap();
    store
}

fn args() -> AppArgs {
    AppArgs {
        profile: DEFAULT_VITALE.into(),
        beneficiary: 1,
        challenge: hex::encode(CHALLENGE),
        practitioner: PRACTITIONER.into(),
        lifetime_secs: 120,
        png: None,
        expired: false,
        issued_at: None,
        sign_with_unknown_ca: false,
    }
}

fn expected(now: i64) -> Expected<'static> {
    Expected {
        practitioner_id: PRACTITIONER,
        challenge: Some(&CHALLENGE),
        now,
        max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
    }
}

// 2026-12-07 10:00:00 UTC.
const NOW: i64 = 1_796_637_600;

#[test]
fn a_token_of_the_test_app_verifies_and_names_its_beneficiary() {
    assert_eq!(parse_time("20261207100000Z"), Some(NOW));
    let t = make_token(&args(), NOW).unwrap();
    t.verify(&trust(), &expected(NOW + 30)).unwrap();
    // Beneficiary 1 of the default card is Léa, the assuré's daughter.
    assert_eq!(t.body.given_name, "Léa");
    let card = match Profile::load(DEFAULT_VITALE).unwrap() {
        Profile::Vitale(v) => v.serial,
        _ => unreachable!(),
    };
    assert_eq!(t.body.app_serial, format!("APP-{card}-1"));
    assert_eq!(t.body.issued_at, "20261207100000Z");
    // 10:00:00 + 120 s.
    assert_eq!(t.body.expires_at, "20261207100200Z");
    // The same text after a round trip through the QR code's text form.
    let again = AppToken::from_text(&t.to_text().unwrap()).unwrap();
    assert_eq!(again, t);
}

#[test]
fn each_refusal_has_its_reason() {
    let store = trust();
    let t = make_token(&args(), NOW).unwrap();
    let reason = |t: &AppToken, e: &Expected<'_>| t.verify(&store, e).unwrap_err().reason();
    // Past its end (10:02:00) by one second.
    assert_eq!(reason(&t, &expected(NOW + 121)), "expired");
    // Issued at 10:00:00, seen at 09:58:59: more than the 60 s of clock skew ahead.
    assert_eq!(reason(&t, &expected(NOW - 61)), "expired");
    let e = Expected {
        practitioner_id: "810009999999",
        ..expected(NOW)
    };
    assert_eq!(reason(&t, &e), "wrong_practitioner");
    let e = Expected {
        challenge: None,
        ..expected(NOW)
    };
    assert_eq!(reason(&t, &e), "unknown_challenge");
    let e = Expected {
        challenge: Some(&[0; 16]),
        ..expected(NOW)
    };
    assert_eq!(reason(&t, &e), "unknown_challenge");
    // Living 10 minutes when 5 are allowed.
    let long = make_token(
        &AppArgs {
            lifetime_secs: 600,
            ..args()
        },
        NOW,
    )
    .unwrap();
    assert_eq!(reason(&long, &expected(NOW)), "expired");
    let expired = make_token(
        &AppArgs {
            expired: true,
            ..args()
        },
        NOW,
    )
    .unwrap();
    assert_eq!(reason(&expired, &expected(NOW)), "expired");
    // A CA nobody trusts, with the same names and usage.
    let rogue = make_token(
        &AppArgs {
            sign_with_unknown_ca: true,
            ..args()
        },
        NOW,
    )
    .unwrap();
    assert_eq!(reason(&rogue, &expected(NOW)), "untrusted");
    // A changed name after signing.
    let mut tampered = t.clone();
    tampered.body.surname = "DURAND".into();
    assert_eq!(reason(&tampered, &expected(NOW)), "bad_signature");
    // Another app's certificate: it names another serial.
    let other = App::from_profile(DEFAULT_VITALE, 0, false).unwrap();
    let mut swapped = t.clone();
    swapped.app_certificate = other.certificate;
    assert_eq!(reason(&swapped, &expected(NOW)), "untrusted");
}

#[test]
fn only_the_vitale_app_ca_makes_apps() {
    let store = trust();
    let pki = TestPki::new().unwrap();
    // An insurer's certificate chains to the same root but is no app's.
    let insurer = pki.insurer_certificate("017510001").unwrap();
    let err = store.check_app(&insurer, NOW).unwrap_err();
    assert!(err.contains("not a Vitale app's"), "{err}");
    // And an app's certificate is no insurer's.
    let app = App::from_profile(DEFAULT_VITALE, 0, false).unwrap();
    let err = store.check_insurer(&app.certificate, NOW).unwrap_err();
    assert!(err.contains("not an insurer's"), "{err}");
    let (serial, _) = store.check_app(&app.certificate, NOW).unwrap();
    assert_eq!(serial, app.serial);
}

#[test]
fn the_png_has_the_codes_modules() {
    let t = make_token(&args(), NOW).unwrap();
    let code = qr::code(&t.to_text().unwrap()).unwrap();
    let (pixels, side) = qr::pixels(&code);
    // (modules + 2 × 4 of quiet zone) × 4 px.
    assert_eq!(side, (code.width() + 8) * 4);
    // The top-left finder pattern starts dark at module (4, 4) = pixel (16, 16); the quiet
    // zone is light.
    assert_eq!(pixels[16 * side + 16], 0);
    assert_eq!(pixels[15 * side + 15], 255);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.png");
    qr::write_png(&code, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(qr::terminal(&code).lines().count() >= code.width() / 2);
}
