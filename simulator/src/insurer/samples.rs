//! Sample lots signed as fsed would sign them, from the default cards or a profile's: what
//! tests of insurers and transports send.

use fse_formats::lot::SignedLot;

/// Builds a signed lot of `n` secured sheets from the default cards, as fsed would (for tests of insurers and transports).
pub fn sample_lot(lot_id: &str, n: u64) -> SignedLot {
    let (holder, situations) = crate::profiles::default_cps_holder();
    lot_signed_by(&holder, &situations, None, lot_id, n, None, false)
}

/// [`sample_lot_by`] of the default CPS where every sheet is an app sheet: Jean DUPONT's
/// Vitale app vouched for him with a token made 30 s before the sheet, for the CPS holder.
pub fn sample_app_lot(lot_id: &str, n: u64) -> Result<SignedLot, String> {
    certified(crate::profiles::DEFAULT_CPS, lot_id, n, None, true)
}

/// [`sample_lot`] signed by the CPS of `profile`, carrying its certificate from the test PKI
/// (an expired or revoked card's lot, for insurers' checks).
pub fn sample_lot_by(profile: &str, lot_id: &str, n: u64) -> Result<SignedLot, String> {
    certified(profile, lot_id, n, None, false)
}

/// [`sample_lot_by`] of the default CPS where every even-numbered sheet is in tiers payant AMC
/// with `amc` paying directly: its DREs make a [`fse_formats::dre_lot::DreLot`].
pub fn sample_lot_with_dres(lot_id: &str, n: u64, amc: &str) -> Result<SignedLot, String> {
    certified(crate::profiles::DEFAULT_CPS, lot_id, n, Some(amc), false)
}

/// A lot signed by the CPS of `profile`, carrying its certificate from the test PKI.
fn certified(
    profile: &str,
    lot_id: &str,
    n: u64,
    amc: Option<&str>,
    app: bool,
) -> Result<SignedLot, String> {
    let crate::profiles::Profile::Cps(c) =
        crate::profiles::Profile::load(profile).map_err(|e| e.to_string())?
    else {
        return Err(format!("{profile} is not a CPS profile"));
    };
    let (holder, situations) = c.holder();
    let key = crate::profiles::test_key(&holder.serial);
    let certificate = crate::pki::TestPki::shared()?
        .cps_certificate(&holder, &key.verifying_key().to_bytes())
        .map_err(|e| e.to_string())?;
    Ok(lot_signed_by(
        &holder,
        &situations,
        Some(certificate),
        lot_id,
        n,
        amc,
        app,
    ))
}

fn lot_signed_by(
    holder: &fse_formats::cards::CpsHolder,
    situations: &[fse_formats::cards::Situation],
    certificate: Option<Vec<u8>>,
    lot_id: &str,
    n: u64,
    amc: Option<&str>,
    app: bool,
) -> SignedLot {
    use ed25519_dalek::Signer;
    use fse_formats::fse::{CareSheet, Mode, Presence, SheetBeneficiary, SheetPractitioner};
    use fse_formats::lot::{leaves, LotEntry, LotHeader};

    let vitale = crate::profiles::default_vitale_data();
    let (cps_key, vit_key) = (
        crate::profiles::test_key(&holder.serial),
        crate::profiles::test_key(&vitale.serial),
    );
    let b = &vitale.beneficiaries[0];
    let entries: Vec<LotEntry> = (1..=n)
        .map(|number| {
            let mut sheet = CareSheet::sample(number);
            if let (Some(amc), 0) = (amc, number % 2) {
                // The AMC pays its share (the ticket modérateur) directly: a DRE goes to it.
                sheet.tiers_payant.amc = true;
                sheet.tiers_payant.amc_number = Some(amc.to_string());
                sheet.amounts.amc_cents = 900;
                sheet.amounts.patient_cents = 200;
                sheet.amounts.due_cents = 200;
            }
            sheet.practitioner = SheetPractitioner {
                national_id: holder.national_id.clone(),
                surname: holder.surname.clone(),
                given_name: holder.given_name.clone(),
                profession: holder.profession.clone(),
                specialty: holder.specialty.clone(),
                billing_number: situations[0].billing_number.clone(),
                sector: situations[0].sector,
                cps_serial: holder.serial.clone(),
            };
            sheet.beneficiary = SheetBeneficiary {
                nir: b.nir.clone(),
                surname: b.surname.clone(),
                given_name: b.given_name.clone(),
                birth_date: b.birth_date.clone(),
                rank: b.rank,
                organism: vitale.organism.code(),
            };
            sheet.mode = Mode::Secured;
            sheet.degraded_reason = None;
            if app {
                app_presence(&mut sheet);
            } else {
                let challenge = sheet.presence_challenge().unwrap_or_default();
                sheet.presence = Some(Presence {
                    vitale_serial: vitale.serial.clone(),
                    public_key: hex::encode(vit_key.verifying_key().to_bytes()),
                    signature: hex::encode(vit_key.sign(&challenge).to_bytes()),
                });
            }
            LotEntry {
                salt: [number as u8; 16],
                sheet: sheet.to_der().unwrap_or_default(),
            }
        })
        .collect();
    let header = LotHeader {
        lot_id: lot_id.into(),
        number: 1,
        practitioner_id: holder.national_id.clone(),
        destination: vitale.organism.code(),
        sheet_count: n,
        merkle_root: fse_formats::merkle::root(&leaves(&entries)),
        closed_at: "20261122120000Z".into(),
        cps_serial: holder.serial.clone(),
        signer_key: cps_key.verifying_key().to_bytes(),
        attachments: Vec::new(),
    };
    let signature = cps_key
        .sign(&header.to_der().unwrap_or_default())
        .to_bytes();
    SignedLot {
        header,
        signature,
        signer_certificate: certificate,
        entries,
    }
}

/// Makes `sheet` an app sheet: the default card's assuré's Vitale app token, made 30 s before
/// the sheet for its practitioner, living 2 minutes, and the rights it carried.
fn app_presence(sheet: &mut fse_formats::fse::CareSheet) {
    let created = fse_formats::app::parse_time(&sheet.created_at).unwrap_or_default();
    let token =
        crate::app::App::from_profile(crate::profiles::DEFAULT_VITALE, 0, false).and_then(|app| {
            app.token(
                [0x11; 16],
                &sheet.practitioner.national_id,
                created - 30,
                120,
            )
        });
    // The built-in profile and the test PKI are valid (`crate::app` tests): a failure leaves a
    // secured sheet without its proof, which the insurer rejects.
    if let Ok(token) = token {
        let _ = token.vouch(sheet);
    }
}
