//! The insurer's check of an app sheet (mode `app`), as of a card's proof: the Vitale app's
//! token must verify under the insurer's trust store as it did when the sheet was made
//! ([`AppToken::verify`] at the sheet's `createdAt`: certificate, signature, issued at most
//! [`DEFAULT_MAX_LIFETIME_SECS`] before and 60 s after, not expired then), name the sheet's
//! practitioner, and vouch for the sheet's beneficiary (NIR, names, birth date, rank,
//! organism). The challenge is fsed's binding, not the insurer's to know. A sheet that fails
//! is rejected with the code `APP_PRESENCE` and the reason word of the refusal.

use fse_formats::ack::Rejection;
use fse_formats::app::{parse_time, AppRefusal, AppToken, Expected, DEFAULT_MAX_LIFETIME_SECS};
use fse_formats::fse::{CareSheet, Mode};
use fse_formats::pki::TrustStore;

/// The stable code of an app sheet whose token does not hold.
pub const APP_PRESENCE: &str = "APP_PRESENCE";

/// Why the token of `sheet` (mode app) does not vouch for it, if it does not.
pub fn check(sheet: &CareSheet, trust: &TrustStore) -> Result<(), String> {
    let malformed = |why: String| AppRefusal::Malformed(why).to_string();
    let der = sheet
        .app_presence
        .as_ref()
        .and_then(|p| hex::decode(&p.token).ok())
        .ok_or_else(|| malformed("no token".into()))?;
    let token = AppToken::from_der(&der).map_err(|e| malformed(e.to_string()))?;
    let created = parse_time(&sheet.created_at)
        .ok_or_else(|| malformed("the sheet's createdAt is not YYYYMMDDHHMMSSZ".into()))?;
    token
        .verify(
            trust,
            &Expected {
                practitioner_id: &sheet.practitioner.national_id,
                challenge: Some(&token.body.challenge),
                now: created,
                max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
            },
        )
        .map_err(|r| r.to_string())?;
    let (b, s) = (&token.body, &sheet.beneficiary);
    let differs = [
        ("nir", b.nir == s.nir),
        ("surname", b.surname == s.surname),
        ("given_name", b.given_name == s.given_name),
        ("birth_date", b.birth_date == s.birth_date),
        ("rank", b.rank == s.rank),
        ("organism", b.organism == s.organism),
    ]
    .into_iter()
    .find(|(_, same)| !same);
    match differs {
        Some((field, _)) => Err(format!(
            "wrong_beneficiary: the token's {field} is not the sheet's"
        )),
        None => Ok(()),
    }
}

/// The rejections of the app sheets of a lot that verified (none without a trust store: the
/// insurer then checks nothing of anyone's certificates).
pub(super) fn rejections(sheets: &[CareSheet], trust: Option<&TrustStore>) -> Vec<Rejection> {
    let Some(trust) = trust else {
        return Vec::new();
    };
    sheets
        .iter()
        .filter(|s| s.mode == Mode::App)
        .filter_map(|s| {
            check(s, trust).err().map(|reason| Rejection {
                sheet_number: Some(s.number),
                code: APP_PRESENCE.to_string(),
                reason,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::TestPki;

    fn trust() -> TrustStore {
        let pki = TestPki::new().unwrap();
        let mut store = TrustStore::new();
        store.add_certificates(pki.root_pem().as_bytes()).unwrap();
        store.add_certificates(pki.ca_pem().as_bytes()).unwrap();
        store
    }

    #[test]
    fn an_app_lot_is_acknowledged_and_each_mismatch_is_rejected() {
        let store = trust();
        let lot = crate::insurer::sample_app_lot("L-APP", 2).unwrap();
        let der = lot.to_der().unwrap();
        let arl = super::super::judge::judge(
            fse_formats::lot::SignedLot::from_der(&der),
            "017510001",
            "20261122120000Z",
            Some(&store),
        );
        assert!(arl.rejections.is_empty(), "{:?}", arl.rejections);
        let sheet = CareSheet::from_der(&lot.entries[0].sheet).unwrap();
        assert_eq!(sheet.mode, Mode::App);
        check(&sheet, &store).unwrap();
        let reason = |s: &CareSheet| check(s, &store).unwrap_err();

        let mut other = sheet.clone();
        other.beneficiary.given_name = "Léa".into();
        assert!(
            reason(&other).starts_with("wrong_beneficiary"),
            "{}",
            reason(&other)
        );
        let mut other = sheet.clone();
        other.practitioner.national_id = "810009999999".into();
        assert!(reason(&other).starts_with("wrong_practitioner"));
        // Made 30 s before the sheet and living 120 s: a sheet 91 s later is past its end.
        let created = parse_time(&sheet.created_at).unwrap();
        let mut late = sheet.clone();
        late.created_at = fse_formats::app::format_time(created + 91);
        assert!(reason(&late).starts_with("expired"), "{}", reason(&late));
        late.created_at = fse_formats::app::format_time(created + 90);
        check(&late, &store).unwrap();
        // A signed byte changed (the birth date's last digit, inside the body).
        let mut token = hex::decode(&sheet.app_presence.as_ref().unwrap().token).unwrap();
        let t = AppToken::from_der(&token).unwrap();
        let at = token
            .windows(8)
            .position(|w| w == t.body.birth_date.as_bytes())
            .unwrap();
        token[at + 7] ^= 0x01;
        let mut forged = sheet.clone();
        forged.app_presence = Some(fse_formats::fse::AppPresence {
            token: hex::encode(&token),
        });
        assert!(
            reason(&forged).starts_with("bad_signature"),
            "{}",
            reason(&forged)
        );
        // Without a trust store the insurer checks nothing of anyone's certificates.
        assert!(rejections(std::slice::from_ref(&forged), None).is_empty());
        let r = rejections(&[forged], Some(&store));
        assert_eq!(r[0].code, APP_PRESENCE);
        assert_eq!(r[0].sheet_number, Some(sheet.number));
    }
}
