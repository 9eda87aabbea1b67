use super::*;

fn body() -> AppTokenBody {
    AppTokenBody {
        app_serial: "APP-0001".into(),
        nir: "180017512345678".into(),
        surname: "DUPONT".into(),
        given_name: "Jean".into(),
        birth_date: "19800115".into(),
        rank: 1,
        organism: "017510001".into(),
        rights_from: "20260101".into(),
        rights_until: "20261231".into(),
        challenge: [0xA5; 16],
        practitioner_id: "810001234567".into(),
        issued_at: "20261207101500Z".into(),
        expires_at: "20261207102000Z".into(),
    }
}

fn token() -> AppToken {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    AppToken::sign(body(), &key, vec![0x30, 0x00]).unwrap()
}

#[test]
fn round_trips_in_der_and_text() {
    let t = token();
    let der = t.to_der().unwrap();
    assert_eq!(der[0], 0x30);
    assert_eq!(AppToken::from_der(&der).unwrap(), t);
    let text = t.to_text().unwrap();
    assert!(text.starts_with("FSEDAPP1:"));
    // base64url of n bytes without padding is ceil(4n/3) characters.
    assert_eq!(text.len(), 9 + (4 * der.len()).div_ceil(3));
    assert!(!text.contains('=') && !text.contains('+') && !text.contains('/'));
    assert_eq!(AppToken::from_text(&format!(" {text}\n")).unwrap(), t);
    assert_eq!(t.body.organism().code(), "017510001");
    let data = t.vitale_data();
    assert_eq!(data.beneficiaries[0].nir, "180017512345678");
    assert_eq!(data.organism.caisse, "751");
    // The digest is the body's: the same body with another certificate is the same token.
    let other = AppToken {
        app_certificate: vec![0x30, 0x03, 0x02, 0x01, 0x01],
        ..t.clone()
    };
    assert_eq!(other.digest().unwrap(), t.digest().unwrap());
    assert_eq!(t.digest().unwrap().len(), 64);
}

#[test]
fn base64url_matches_rfc_4648_vectors() {
    // RFC 4648 §10 vectors, padding dropped.
    for (plain, enc) in [
        ("", ""),
        ("f", "Zg"),
        ("fo", "Zm8"),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg"),
        ("fooba", "Zm9vYmE"),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64url(plain.as_bytes()), enc);
        assert_eq!(from_base64url(enc).unwrap(), plain.as_bytes());
    }
    // 0xFB 0xFF: "+/8" in standard base64, "-_8" here.
    assert_eq!(base64url(&[0xFB, 0xFF]), "-_8");
    assert!(from_base64url("Zg==").is_none(), "padding refused");
    assert!(
        from_base64url("Zh").is_none(),
        "non-zero unused bits refused"
    );
    assert!(from_base64url("Z").is_none());
    assert!(from_base64url("Zm9v+A").is_none());
}

#[test]
fn non_canonical_and_misshapen_tokens_are_malformed() {
    let der = token().to_der().unwrap();
    // A long-form length for the outer SEQUENCE is not DER.
    let mut long = vec![0x30, 0x82];
    long.extend_from_slice(&u16::try_from(der.len() - 4).unwrap().to_be_bytes());
    long.extend_from_slice(&der[4..]);
    assert!(AppToken::from_der(&long).is_err());
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(AppToken::from_der(&trailing).is_err());
    // A challenge of 15 bytes, a version 2, an organism of letters.
    let mut b = body();
    b.organism = "01751ABCD".into();
    let t = AppToken { body: b, ..token() };
    let err = AppToken::from_der(&t.to_der().unwrap()).unwrap_err();
    assert_eq!(err, DerError::field("organism", "not 9 digits"));
    let mut b = body();
    b.expires_at = "20261207102000".into();
    let t = AppToken { body: b, ..token() };
    assert!(AppToken::from_der(&t.to_der().unwrap()).is_err());
    for bad in ["", "FSEDAPP2:AAAA", "FSEDAPP1:!!!!", "FSEDAPP1:MAA"] {
        let e = AppToken::from_text(bad).unwrap_err();
        assert_eq!(e.reason(), "malformed", "{bad}: {e}");
    }
}

#[test]
fn a_token_is_untrusted_without_its_ca_and_reasons_are_stable() {
    let t = token();
    let expected = Expected {
        practitioner_id: "810001234567",
        challenge: Some(&[0xA5; 16]),
        now: parse_time("20261207101600Z").unwrap(),
        max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
    };
    let e = t.verify(&TrustStore::new(), &expected).unwrap_err();
    assert_eq!(e.reason(), "untrusted");
    assert_eq!(AppRefusal::Replayed.reason(), "replayed");
    assert_eq!(AppRefusal::BadSignature.reason(), "bad_signature");
    assert_eq!(AppRefusal::UnknownChallenge.reason(), "unknown_challenge");
}

#[test]
fn times_parse_and_format() {
    // 2026-12-07 10:15:00 UTC: 20 794 days after the epoch (1970..2026: 56 years, 14 leap
    // days → 20 454; + 340 days to 7 December) → 20 794 × 86 400 + 10 × 3600 + 15 × 60.
    let t = parse_time("20261207101500Z").unwrap();
    assert_eq!(t, 20_794 * 86_400 + 36_900);
    assert_eq!(format_time(t), "20261207101500Z");
    assert!(parse_time("20261207101500").is_none());
    assert!(parse_time("20261307101500Z").is_none());
}
