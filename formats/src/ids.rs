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

    #[test]
    fn luhn_keys() {
        assert!(luhn_is_valid("79927398713"));
        assert!(!luhn_is_valid("79927398710"));
        assert_eq!(luhn_key("7992739871"), Some(3));
        assert!(rpps_is_valid("79927398713"));
        assert!(!rpps_is_valid("7992739871"));
    }
}
