use super::*;

fn sample_sheet() -> CareSheet {
    CareSheet::sample(42)
}

#[test]
fn der_round_trip_degraded_and_secured() {
    use ed25519_dalek::{Signer, SigningKey};
    let mut s = sample_sheet();
    let der = s.to_der().unwrap();
    assert_eq!(der[0], 0x30);
    assert_eq!(CareSheet::from_der(&der).unwrap(), s);
    s.verify_presence().unwrap();

    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    s.mode = Mode::Secured;
    s.degraded_reason = None;
    let sig = key.sign(&s.presence_challenge().unwrap());
    s.presence = Some(Presence {
        vitale_serial: "V123".into(),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        signature: hex::encode(sig.to_bytes()),
    });
    let der = s.to_der().unwrap();
    let back = CareSheet::from_der(&der).unwrap();
    assert_eq!(back, s);
    back.verify_presence().unwrap();

    let mut tampered = back.clone();
    tampered.amounts.amo_cents += 1;
    assert!(tampered.verify_presence().is_err());
}

#[test]
fn truncated_der_is_an_error_not_a_panic() {
    let der = sample_sheet().to_der().unwrap();
    for cut in 0..der.len() {
        assert!(CareSheet::from_der(&der[..cut]).is_err());
    }
}

/// A sheet priced on an online answer, as `fse.create` makes one.
fn online_sheet() -> CareSheet {
    let mut s = sample_sheet();
    s.mode = Mode::Secured;
    s.degraded_reason = None;
    s.rights = Some(RightsOrigin {
        source: RightsSource::Online,
        read_at: "20261122101459Z".into(),
        answer_digest: Some("ab".repeat(32)),
        fallback: None,
    });
    s
}

#[test]
fn a_sheet_without_version_3_fields_stays_version_2_byte_for_byte() {
    let s = sample_sheet();
    assert_eq!(s.der_version(), SHEET_VERSION);
    let der = s.to_der().unwrap();
    // SEQUENCE { SEQUENCE { INTEGER 2, …: the body's first element is the version.
    let body = &der[2 + usize::from(der[1] & 0x80 != 0) * usize::from(der[1] & 0x7f)..];
    let at = 2 + usize::from(body[1] & 0x80 != 0) * usize::from(body[1] & 0x7f);
    assert_eq!(&body[at..at + 3], &[0x02, 0x01, 0x02]);
    assert_eq!(s.rights_source(), "typed");
}

#[test]
fn version_3_round_trips_the_rights_origin_and_the_app_token() {
    let s = online_sheet();
    assert_eq!(s.der_version(), SHEET_VERSION_RIGHTS);
    let der = s.to_der().unwrap();
    let back = CareSheet::from_der(&der).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.rights_source(), "online");
    // The body the card signs covers the rights' origin.
    let mut other = s.clone();
    other.rights.as_mut().unwrap().read_at = "20261122101458Z".into();
    assert_ne!(
        other.presence_challenge().unwrap(),
        s.presence_challenge().unwrap()
    );

    let mut fallback = sample_sheet();
    fallback.mode = Mode::Secured;
    fallback.degraded_reason = None;
    fallback.rights = Some(RightsOrigin {
        source: RightsSource::Card,
        read_at: "20261122101500Z".into(),
        answer_digest: None,
        fallback: Some("the rights service did not answer within 2000 ms".into()),
    });
    assert_eq!(
        CareSheet::from_der(&fallback.to_der().unwrap()).unwrap(),
        fallback
    );

    let mut app = sample_sheet();
    app.mode = Mode::App;
    app.degraded_reason = None;
    app.rights = Some(RightsOrigin {
        source: RightsSource::App,
        read_at: "20261122101400Z".into(),
        answer_digest: None,
        fallback: None,
    });
    app.app_presence = Some(AppPresence {
        token: "3003020101".into(),
    });
    let back = CareSheet::from_der(&app.to_der().unwrap()).unwrap();
    assert_eq!(back, app);
    back.verify_presence().unwrap();
    let json = serde_json::to_value(&back).unwrap();
    assert_eq!(json["mode"], "app");
    assert_eq!(json["rights_source"], "app");
    assert_eq!(json["app_presence"]["token"], "3003020101");
}

#[test]
fn inconsistent_version_3_sheets_are_refused() {
    // An app sheet must record its rights' origin and carry its token, and no card proof.
    let mut app = sample_sheet();
    app.mode = Mode::App;
    app.degraded_reason = None;
    assert!(app.to_der().is_err());
    app.app_presence = Some(AppPresence { token: "00".into() });
    assert!(app.to_der().is_err(), "no rights' origin");
    // A token on a secured sheet.
    let mut s = online_sheet();
    s.app_presence = Some(AppPresence { token: "00".into() });
    assert!(s.to_der().is_err());
    assert!(s.verify_presence().is_err());
    // An answer digest that is not 32 bytes.
    let mut s = online_sheet();
    s.rights.as_mut().unwrap().answer_digest = Some("abcd".into());
    assert!(s.to_der().is_err());
}

#[test]
fn a_version_2_sheet_claiming_the_app_mode_is_refused() {
    let s = sample_sheet();
    let mut der = s.to_der().unwrap();
    // The mode, degraded (1), is the INTEGER just before the degraded reason's SEQUENCE.
    let reason = b"no Vitale card";
    let at = der.windows(reason.len()).position(|w| w == reason).unwrap();
    // … 02 01 01 30 LL 0C LL "no Vitale card"
    let mode_at = at - 2 - 2 - 1;
    assert_eq!(&der[mode_at - 2..=mode_at], &[0x02, 0x01, 0x01]);
    der[mode_at] = 2;
    let e = CareSheet::from_der(&der).unwrap_err();
    assert!(e.to_string().contains("mode"), "{e}");
}

#[test]
fn truncated_version_3_der_is_an_error_not_a_panic() {
    let der = online_sheet().to_der().unwrap();
    for cut in 0..der.len() {
        assert!(CareSheet::from_der(&der[..cut]).is_err());
    }
}
