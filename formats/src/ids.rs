//! Identifiers and their check keys: NIR (social security number) key,
//! RPPS Luhn key, insurance billing number (8 characters, Luhn key).

/// The NIR key: 97 − (first 13 digits mod 97), with Corsica `2A` → 19 and `2B` → 18.
///
/// Returns `None` when `nir13` is not 13 characters of digits (or 2A/2B at positions 6-7).
pub fn nir_key(nir13: &str) -> Option<u8> {
    if nir13.len() != 13 || !nir13.is_ascii() {
        return None;
    }
    let digits = match &nir13[5..7] {
        "2A" | "2a" => format!("{}19{}", &nir13[..5], &nir13[7..]),
        "2B" | "2b" => format!("{}18{}", &nir13[..5], &nir13[7..]),
        _ => nir13.to_string(),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some((97 - (n % 97)) as u8)
}

/// Whether a 15-character NIR (13 characters then a 2-digit key) has the right key.
pub fn nir_is_valid(nir15: &str) -> bool {
    if nir15.len() != 15 || !nir15.is_ascii() {
        return false;
    }
    match (nir_key(&nir15[..13]), nir15[13..].parse::<u8>()) {
        (Some(k), Ok(given)) => k == given,
        _ => false,
    }
}

/// The part of a NIR that is wrong (see [`nir_check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NirError {
    /// Not 15 characters: 13 digits (`2A`/`2B` at characters 6-7) then a 2-digit key.
    #[error(
        "the NIR has 15 characters: 13 digits (2A or 2B for Corsica at characters 6-7) then a \
         2-digit key"
    )]
    Shape,
    /// Character 1: not 1 or 2 (registered), 3 or 4 (being registered), 7 or 8 (temporary).
    #[error(
        "the NIR's sex digit (character 1) is {0}: 1 or 2, 3 or 4 (being registered), 7 or 8 \
         (temporary number)"
    )]
    Sex(char),
    /// Characters 4-5: not 01-12, 20-42 or 50-99.
    #[error(
        "the NIR's birth month (characters 4-5) is {0}: 01 to 12, or 20 to 42 and 50 to 99 \
         where the civil status gives no month"
    )]
    Month(String),
    /// Characters 6-7 (6-8 overseas): no such place of birth.
    #[error(
        "the NIR's département of birth (characters 6-7, 6-8 overseas) is {0}: 01 to 96, 2A, \
         2B, 971 to 978, 984 to 988, or 99 (born abroad)"
    )]
    Department(String),
    /// Characters 8-10 (9-10 overseas): commune 000 (00), or a country code not 100-599.
    #[error("the NIR's commune of birth is {0}: {1}")]
    Commune(String, &'static str),
    /// Characters 11-13: order number 000.
    #[error("the NIR's order number (characters 11-13) is 000: 001 to 999")]
    Order,
    /// Characters 14-15: not 97 − (the 13 first characters mod 97).
    #[error(
        "the NIR's key (characters 14-15) is {given}, the 13 first characters give {expected:02}"
    )]
    Key {
        /// The key given.
        given: String,
        /// The key the 13 first characters give.
        expected: u8,
    },
}

/// Checks a NIR's structure and key, and names the first part that is wrong:
///
/// | characters | part | accepted |
/// |---|---|---|
/// | 1 | sex | `1`, `2`; `3`, `4` (foreign-born, being registered); `7`, `8` (temporary number, NIA) |
/// | 2-3 | year of birth | `00`-`99` |
/// | 4-5 | month of birth | `01`-`12`; `20`-`42` and `50`-`99` (civil status without a month) |
/// | 6-7 | département | `01`-`96` (`20`: Corsica before 1976; `91`-`96`: Algeria, Morocco, Tunisia before independence), `2A`, `2B`; `99` born abroad |
/// | 6-8 | overseas | `971`-`978`, `984`-`988` |
/// | 8-10 | commune | `001`-`999`; overseas (9-10) `01`-`99`; abroad: the country code `100`-`599` |
/// | 11-13 | order | `001`-`999` |
/// | 14-15 | key | 97 − (the 13 first characters mod 97), `2A` → 19, `2B` → 18 |
pub fn nir_check(nir15: &str) -> Result<(), NirError> {
    let b = nir15.as_bytes();
    if b.len() != 15 {
        return Err(NirError::Shape);
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let corsica = matches!(&b[5..7], b"2A" | b"2B");
    if !digits(0..5) || !(corsica || digits(5..7)) || !digits(7..15) {
        return Err(NirError::Shape);
    }
    // All ASCII from here: slicing `nir15` by byte is slicing it by character.
    let number =
        |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    if !matches!(b[0], b'1' | b'2' | b'3' | b'4' | b'7' | b'8') {
        return Err(NirError::Sex(char::from(b[0])));
    }
    let month = number(3..5);
    if !matches!(month, 1..=12 | 20..=42 | 50..=99) {
        return Err(NirError::Month(nir15[3..5].to_string()));
    }
    let department = if corsica { 20 } else { number(5..7) };
    match department {
        97 | 98 => {
            let overseas = number(5..8);
            if !matches!(overseas, 971..=978 | 984..=988) {
                return Err(NirError::Department(nir15[5..8].to_string()));
            }
            if number(8..10) == 0 {
                return Err(NirError::Commune(
                    nir15[8..10].to_string(),
                    "01 to 99 overseas (characters 9-10)",
                ));
            }
        }
        99 => {
            if !(100..=599).contains(&number(7..10)) {
                return Err(NirError::Commune(
                    nir15[7..10].to_string(),
                    "born abroad (99), characters 8-10 are the country's code, 100 to 599",
                ));
            }
        }
        1..=96 => {
            if number(7..10) == 0 {
                return Err(NirError::Commune(
                    nir15[7..10].to_string(),
                    "001 to 999 (characters 8-10)",
                ));
            }
        }
        _ => return Err(NirError::Department(nir15[5..7].to_string())),
    }
    if number(10..13) == 0 {
        return Err(NirError::Order);
    }
    // The shape checked above makes the 13 first characters a valid input of `nir_key`.
    let expected = nir_key(&nir15[..13]).ok_or(NirError::Shape)?;
    if number(13..15) != u32::from(expected) {
        return Err(NirError::Key {
            given: nir15[13..].to_string(),
            expected,
        });
    }
    Ok(())
}

/// Whether a digit string passes the Luhn check (its last digit is the key).
pub fn luhn_is_valid(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if !i.is_multiple_of(2) {
                let dd = d * 2;
                if dd > 9 {
                    dd - 9
                } else {
                    dd
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The Luhn key digit to append to `digits`, or `None` if they are not all digits.
pub fn luhn_key(digits: &str) -> Option<u8> {
    (0..=9u8).find(|k| luhn_is_valid(&format!("{digits}{k}")))
}

/// Whether an RPPS number (11 digits, Luhn key last) is well formed.
pub fn rpps_is_valid(rpps: &str) -> bool {
    rpps.len() == 11 && luhn_is_valid(rpps)
}

/// Whether an insurance billing number (numéro de facturation: 8 digits, the last a Luhn key,
/// "clé type 1-2") is well formed.
pub fn billing_number_is_valid(number: &str) -> bool {
    number.len() == 8 && luhn_is_valid(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nir_key_matches_worked_examples() {
        // 1 85 05 78 006 084 → key 91 (97 − 1850578006084 mod 97).
        assert_eq!(nir_key("1850578006084"), Some(91));
        assert!(nir_is_valid("185057800608491"));
        assert!(!nir_is_valid("185057800608492"));
    }

    #[test]
    fn corsica_departments_map_to_19_and_18() {
        let a = nir_key("185052A006084").unwrap();
        let direct = nir_key("1850519006084").unwrap();
        assert_eq!(a, direct);
        let b = nir_key("185052B006084").unwrap();
        assert_eq!(b, nir_key("1850518006084").unwrap());
        assert_eq!(nir_key("18505XX006084"), None);
    }

    // The NIRs below are the worked example 1 85 05 78 006 084 (n mod 97 = 97 − 91 = 6) with
    // one part changed; the change of n mod 97 is worked out from the place of the part:
    // 10^3 ≡ 30, 10^6 ≡ 27, 10^8 ≡ 81, 10^12 ≡ 50 (mod 97; 10^2 = 100 ≡ 3, 10^4 ≡ 9,
    // 10^8 ≡ 81, 10^12 ≡ 81 × 9 = 729 ≡ 729 − 679 = 50, 10^3 = 1000 ≡ 1000 − 970 = 30,
    // 10^6 ≡ 9 × 3 = 27). Key = 97 − (6 + change) mod 97.

    #[test]
    fn nir_structure_accepts_the_real_kinds_of_numbers() {
        // The worked example itself.
        assert_eq!(nir_check("185057800608491"), Ok(()));
        // Sex 7 (temporary number): +6 × 10^12 ≡ 6 × 50 = 300 ≡ 300 − 291 = 9; 6 + 9 = 15 → 82.
        assert_eq!(nir_check("785057800608482"), Ok(()));
        // Month 20 (no month in the civil status): +15 × 10^8 ≡ 15 × 81 = 1215 ≡ 1215 − 1164
        // = 51; 6 + 51 = 57 → key 40.
        assert_eq!(nir_check("185207800608440"), Ok(()));
        // Corsica 2A counts as 19: (19 − 78) × 10^6 ≡ −59 × 27 = −1593 ≡ −41 ≡ 56; 62 → 35.
        assert_eq!(nir_check("185052A00608435"), Ok(()));
        // Corsica before 1976, département 20: −58 × 27 = −1566 ≡ −14 ≡ 83; 89 → key 08.
        assert_eq!(nir_check("185052000608408"), Ok(()));
        // Guadeloupe 971, commune 05: digits 6-10 go from 78006 to 97105, +19099 × 10^3;
        // 19099 ≡ 19099 − 19012 = 87, 87 × 30 = 2610 ≡ 2610 − 2522 = 88; 94 → key 03.
        assert_eq!(nir_check("185059710508403"), Ok(()));
        // Born in Germany (99 109): 78006 → 99109, +21103 × 10^3; 21103 ≡ 21103 − 21049 = 54,
        // 54 × 30 = 1620 ≡ 1620 − 1552 = 68; 74 → key 23.
        assert_eq!(nir_check("185059910908423"), Ok(()));
    }

    #[test]
    fn nir_structure_names_the_wrong_part() {
        // All zeros with the key they give (97 − 0 = 97): no sex digit 0.
        assert_eq!(nir_check("000000000000097"), Err(NirError::Sex('0')));
        // Sex 5: +4 × 10^12 ≡ 4 × 50 = 200 ≡ 200 − 194 = 6; 12 → key 85.
        assert_eq!(nir_check("585057800608485"), Err(NirError::Sex('5')));
        // Month 13: +8 × 10^8 ≡ 8 × 81 = 648 ≡ 648 − 582 = 66; 72 → key 25.
        assert_eq!(
            nir_check("185137800608425"),
            Err(NirError::Month("13".into()))
        );
        // Month 00: −5 × 81 = −405 ≡ −405 + 485 = 80; 86 → key 11.
        assert_eq!(
            nir_check("185007800608411"),
            Err(NirError::Month("00".into()))
        );
        // Département 00: −78 × 27 = −2106 ≡ −(2106 − 2037) = −69 ≡ 28; 34 → key 63.
        assert_eq!(
            nir_check("185050000608463"),
            Err(NirError::Department("00".into()))
        );
        // Overseas 979: 78006 → 97906, +19900 × 10^3; 19900 ≡ 19900 − 19885 = 15,
        // 15 × 30 = 450 ≡ 450 − 388 = 62; 68 → key 29.
        assert_eq!(
            nir_check("185059790608429"),
            Err(NirError::Department("979".into()))
        );
        // Commune 000: −6 × 10^3 ≡ −6 × 30 = −180 ≡ −180 + 194 = 14; 20 → key 77.
        assert!(matches!(
            nir_check("185057800008477"),
            Err(NirError::Commune(c, _)) if c == "000"
        ));
        // Overseas commune 00: 78006 → 97100, +19094 × 10^3; 19094 ≡ 82, 82 × 30 = 2460
        // ≡ 2460 − 2425 = 35; 41 → key 56.
        assert!(matches!(
            nir_check("185059710008456"),
            Err(NirError::Commune(c, _)) if c == "00"
        ));
        // Born abroad, country 000: 78006 → 99000, +20994 × 10^3; 20994 ≡ 20994 − 20952 = 42,
        // 42 × 30 = 1260 ≡ 1260 − 1164 = 96; 102 ≡ 5 → key 92.
        assert!(matches!(
            nir_check("185059900008492"),
            Err(NirError::Commune(c, _)) if c == "000"
        ));
        // Order 000: −84 ≡ 13; 19 → key 78.
        assert_eq!(nir_check("185057800600078"), Err(NirError::Order));
        assert_eq!(
            nir_check("185057800608492"),
            Err(NirError::Key {
                given: "92".into(),
                expected: 91
            })
        );
        for shape in [
            "18505780060849",
            "1850578006084910",
            "185052C00608435",
            "185052a00608435",
            "1 85 05 78 006 0",
            "18505780060849\u{e9}",
        ] {
            assert_eq!(nir_check(shape), Err(NirError::Shape), "{shape}");
        }
    }

    #[test]
    fn billing_numbers_carry_a_luhn_key() {
        // 7512345k: from the right, doubled 5 → 1, 3 → 6, 1 → 2, 7 → 5; kept 4, 2, 5:
        // 1 + 4 + 6 + 2 + 2 + 5 + 5 = 25, so k = 5.
        assert!(billing_number_is_valid("75123455"));
        assert!(!billing_number_is_valid("75123456"));
        assert!(!billing_number_is_valid("7512345"));
        assert!(!billing_number_is_valid("751234550"));
    }

    #[test]
    fn luhn_keys() {
        assert!(luhn_is_valid("79927398713"));
        assert!(!luhn_is_valid("79927398710"));
        assert_eq!(luhn_key("7992739871"), Some(3));
        assert!(rpps_is_valid("79927398713"));
        assert!(!rpps_is_valid("7992739871"));
    }
}
