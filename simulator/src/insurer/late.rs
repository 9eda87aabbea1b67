//! The late-payment knob (`--pay-after-working-days N`): the insurer dates its payment
//! return N working days after the ARL it follows, so a test platform plays an AMO that pays
//! late. The simulator plays the date only (the return still goes at once); fsed believes the
//! signed dates and counts the working days between them (`fse_formats::late_payment`).

use chrono::{NaiveDate, NaiveTime};
use fse_formats::calendar::{add_working_days, Region};
use fse_formats::late_payment::paris_date;

/// The `issuedAt` of a payment return made `working_days` working days (Metropolitan France's
/// calendar) after an ARL received at `arl_received_at` (`YYYYMMDDHHMMSSZ`): that day in
/// France at 10:00 UTC (11:00 or 12:00 in Paris, the same day); `None` when the ARL's time
/// is not a GeneralizedTime or the day is past chrono's range.
pub fn payment_issued_at(arl_received_at: &str, working_days: u32) -> Option<String> {
    let arl_day = paris_date(arl_received_at)?;
    let day: NaiveDate = add_working_days(arl_day, working_days, Region::Metropole)?;
    let at = day.and_time(NaiveTime::from_hms_opt(10, 0, 0)?);
    Some(at.format("%Y%m%d%H%M%SZ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payment_is_dated_n_working_days_after_the_arl() {
        // ARL Friday 4 December 2026 at 10:00 UTC (11:00 in Paris). Monday 7 is day 1, ...,
        // Tuesday 15 is day 7, Wednesday 16 day 8, Friday 18 day 10.
        let arl = "20261204100000Z";
        assert_eq!(
            payment_issued_at(arl, 0).as_deref(),
            Some("20261204100000Z")
        );
        assert_eq!(
            payment_issued_at(arl, 1).as_deref(),
            Some("20261207100000Z")
        );
        assert_eq!(
            payment_issued_at(arl, 8).as_deref(),
            Some("20261216100000Z")
        );
        assert_eq!(
            payment_issued_at(arl, 10).as_deref(),
            Some("20261218100000Z")
        );
        // ARL Wednesday 23 December 2026 at 23:30 UTC is Thursday 24 in Paris: day 1 is
        // Monday 28 (Friday 25 is Christmas), day 5 Monday 4 January 2027 (1 January off).
        assert_eq!(
            payment_issued_at("20261223233000Z", 1).as_deref(),
            Some("20261228100000Z")
        );
        assert_eq!(
            payment_issued_at("20261223233000Z", 5).as_deref(),
            Some("20270104100000Z")
        );
        assert_eq!(payment_issued_at("not a time", 1), None);
    }

    #[test]
    fn the_knob_dates_the_payment_return_after_its_arl() {
        use crate::insurer::{sample_lot, Insurer, Knobs};
        let mut ins = Insurer::new("i").with_knobs(Knobs {
            payments: true,
            pay_after_working_days: Some(8),
            ..Knobs::default()
        });
        let lot = sample_lot("L-late", 2);
        let arl = ins.receive(&lot.to_der().unwrap());
        let ret = ins.payment_return("L-late").expect("a payment return");
        assert_eq!(
            ret.issued_at,
            payment_issued_at(&arl.received_at, 8).unwrap()
        );
        let arl_day = paris_date(&arl.received_at).unwrap();
        let paid_day = paris_date(&ret.issued_at).unwrap();
        // Eight working days later, as fsed counts them.
        assert_eq!(
            fse_formats::late_payment::working_days_between(arl_day, paid_day, Region::Metropole),
            8
        );
    }
}
