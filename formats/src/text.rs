//! The text a request puts on a sheet: each kind of field's character set,
//! its length bounds and the normalisation fsed applies before checking it.
//! `daemon/API.md` ("Text fields") lists which field is of which kind.
//!
//! What the insurers' files carry is the French character set of ISO/IEC
//! 8859-15 (Latin-9): fsed accepts that and nothing else, so no control
//! character, no format character (zero-width, bidirectional overrides such
//! as U+202E), no emoji and no other script ever reaches a sheet. Text is
//! first put in Unicode NFC (a practice software sending `e` + U+0301 gets
//! `é`), typographic apostrophes, quotes, dashes, no-break spaces and the
//! ellipsis become their ASCII forms, and spaces around it are dropped; the
//! sheet carries that normalised text. Positions in messages count
//! characters of the normalised text from 1; a character is printed as its
//! code point (`U+202E`), with the character itself only when it is visible
//! ASCII, so a message never carries what it refuses.

use std::borrow::Cow;

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// Longest surname or given name, in characters.
pub const NAME_MAX: usize = 80;
/// Longest degraded-mode reason, in characters.
pub const REASON_MAX: usize = 200;
/// Longest act code (NGAP key or CCAM code), in characters.
pub const ACT_CODE_MAX: usize = 16;
/// Longest modifier code, in characters.
pub const MODIFIER_MAX: usize = 8;
/// Most modifiers on one act.
pub const MODIFIERS_PER_ACT: usize = 8;
/// Longest AT/MP number, in characters.
pub const AT_MP_NUMBER_MAX: usize = 20;
/// Longest idempotency key, in characters.
pub const IDEMPOTENCY_KEY_MAX: usize = 128;
/// Length of an insurance billing number: 7 digits and a Luhn key.
pub const BILLING_NUMBER_LEN: usize = 8;

/// Why a text was refused, in words that print the faulty character safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TextError(pub String);

/// A character as a message may print it: `'x' (U+0078)` for visible ASCII, else `U+202E`.
pub fn show(c: char) -> String {
    if c.is_ascii_graphic() {
        format!("'{c}' (U+{:04X})", u32::from(c))
    } else {
        format!("U+{:04X}", u32::from(c))
    }
}

/// The ASCII form of a typographic character, when it has one.
fn ascii_form(c: char) -> Option<&'static str> {
    match c {
        '\u{2018}' | '\u{2019}' => Some("'"),
        '\u{201C}' | '\u{201D}' => Some("\""),
        '\u{2010}' | '\u{2011}' | '\u{2013}' | '\u{2014}' => Some("-"),
        '\u{00A0}' | '\u{202F}' => Some(" "),
        '\u{2026}' => Some("..."),
        _ => None,
    }
}

/// NFC, typographic characters in their ASCII form, spaces around dropped. Borrowed when the
/// text is already so (the common case costs no allocation).
pub fn normalise(value: &str) -> Cow<'_, str> {
    let nfc: Cow<'_, str> = if is_nfc_quick(value.chars()) == IsNormalized::Yes {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(value.nfc().collect())
    };
    let ascii: Cow<'_, str> = if nfc.chars().any(|c| ascii_form(c).is_some()) {
        let mut s = String::with_capacity(nfc.len());
        for c in nfc.chars() {
            match ascii_form(c) {
                Some(a) => s.push_str(a),
                None => s.push(c),
            }
        }
        Cow::Owned(s)
    } else {
        nfc
    };
    match ascii {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim_matches(' ')),
        Cow::Owned(s) => {
            let t = s.trim_matches(' ');
            if t.len() == s.len() {
                Cow::Owned(s)
            } else {
                Cow::Owned(t.to_string())
            }
        }
    }
}

/// A letter of a name: a letter of Latin-9 — ASCII letters, the Latin-1 letters `À`–`ÿ` but
/// `×` and `÷`, and `Œ œ Š š Ž ž Ÿ`.
pub fn is_name_letter(c: char) -> bool {
    c.is_ascii_alphabetic()
        || matches!(
            c,
            '\u{C0}'..='\u{D6}'
                | '\u{D8}'..='\u{F6}'
                | '\u{F8}'..='\u{FF}'
                | 'Œ'
                | 'œ'
                | 'Š'
                | 'š'
                | 'Ž'
                | 'ž'
                | 'Ÿ'
        )
}

/// A character of free text: printable Latin-1 or Latin-9 — ASCII from space to `~`, `¡`–`ÿ`
/// but the soft hyphen (U+00AD), and `Œ œ Š š Ž ž Ÿ €`.
pub fn is_text_char(c: char) -> bool {
    matches!(c, ' '..='~' | '\u{A1}'..='\u{FF}') && c != '\u{AD}'
        || matches!(c, 'Œ' | 'œ' | 'Š' | 'š' | 'Ž' | 'ž' | 'Ÿ' | '€')
}

fn bounded(n: usize, min: usize, max: usize) -> Result<(), TextError> {
    if n < min {
        return Err(TextError(if n == 0 {
            "is empty".into()
        } else {
            format!("is {n} characters long: at least {min}")
        }));
    }
    if n > max {
        return Err(TextError(format!("is {n} characters long: at most {max}")));
    }
    Ok(())
}

/// A surname or given name, normalised: 1 to [`NAME_MAX`] characters, letters
/// ([`is_name_letter`]) with single spaces, hyphens or apostrophes between them.
pub fn name(value: &str) -> Result<Cow<'_, str>, TextError> {
    let v = normalise(value);
    bounded(v.chars().count(), 1, NAME_MAX)?;
    let mut previous_separator: Option<char> = None;
    for (i, c) in v.chars().enumerate() {
        let position = i + 1;
        if is_name_letter(c) {
            previous_separator = None;
            continue;
        }
        if !matches!(c, ' ' | '-' | '\'') {
            return Err(TextError(format!(
                "character {} at position {position} is not allowed in a name: letters, space, \
                 hyphen (-) and apostrophe (') only",
                show(c)
            )));
        }
        if i == 0 {
            return Err(TextError(format!(
                "begins with {}: a name begins with a letter",
                show(c)
            )));
        }
        if let Some(p) = previous_separator {
            return Err(TextError(format!(
                "{} then {} at positions {}-{position}: one space, hyphen or apostrophe between \
                 two letters",
                show(p),
                show(c),
                position - 1
            )));
        }
        previous_separator = Some(c);
    }
    if let Some(p) = previous_separator {
        return Err(TextError(format!(
            "ends with {}: a name ends with a letter",
            show(p)
        )));
    }
    Ok(v)
}

/// Free text (a reason), normalised: at most `max` characters of [`is_text_char`]; may be
/// empty (the caller says whether it is required).
pub fn free_text(value: &str, max: usize) -> Result<Cow<'_, str>, TextError> {
    let v = normalise(value);
    bounded(v.chars().count(), 0, max)?;
    if let Some((i, c)) = v.chars().enumerate().find(|(_, c)| !is_text_char(*c)) {
        return Err(TextError(format!(
            "character {} at position {} is not allowed: printable Latin-9 characters only (no \
             control, format or bidirectional character, no emoji)",
            show(c),
            i + 1
        )));
    }
    Ok(v)
}

/// A code: 1 to `max` uppercase ASCII letters and digits, as given (not normalised).
pub fn code(value: &str, max: usize) -> Result<(), TextError> {
    bounded(value.chars().count(), 1, max)?;
    match value
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_uppercase() || c.is_ascii_digit()))
    {
        Some((i, c)) => Err(TextError(format!(
            "character {} at position {} is not allowed: uppercase letters A-Z and digits only",
            show(c),
            i + 1
        ))),
        None => Ok(()),
    }
}

/// Exactly `len` ASCII digits.
pub fn digits(value: &str, len: usize) -> Result<(), TextError> {
    let n = value.chars().count();
    if n != len {
        return Err(TextError(format!("is {n} characters long: {len} digits")));
    }
    match value.chars().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, c)) => Err(TextError(format!(
            "character {} at position {} is not a digit",
            show(c),
            i + 1
        ))),
        None => Ok(()),
    }
}

/// A key chosen by a program: 1 to `max` visible ASCII characters (`!` to `~`, no space).
pub fn visible_ascii(value: &str, max: usize) -> Result<(), TextError> {
    bounded(value.chars().count(), 1, max)?;
    match value
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_graphic())
    {
        Some((i, c)) => Err(TextError(format!(
            "character {} at position {} is not allowed: visible ASCII characters only (! to ~)",
            show(c),
            i + 1
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfd_input_is_put_in_nfc() {
        // "Le" + U+0301 COMBINING ACUTE ACCENT + "a": 4 code points, 3 once composed (é = U+00E9).
        let nfd = "Le\u{301}a";
        assert_eq!(nfd.chars().count(), 4);
        let v = name(nfd).unwrap();
        assert_eq!(v, "L\u{e9}a");
        assert_eq!(v.chars().count(), 3);
        assert!(matches!(v, Cow::Owned(_)));
        // Already NFC and clean: nothing copied.
        assert!(matches!(name("Léa").unwrap(), Cow::Borrowed("Léa")));
    }

    #[test]
    fn typographic_forms_become_ascii_and_spaces_around_go() {
        assert_eq!(name("D\u{2019}ARC").unwrap(), "D'ARC");
        assert_eq!(name("  JEAN\u{2011}PIERRE ").unwrap(), "JEAN-PIERRE");
        assert_eq!(name("VAN\u{a0}GOGH").unwrap(), "VAN GOGH");
        assert_eq!(
            free_text(" carte oubli\u{e9}e \u{2026} ", 200).unwrap(),
            "carte oubliée ..."
        );
    }

    #[test]
    fn french_and_latin9_letters_pass() {
        for n in [
            "ŒUVRAY", "Chloë", "Ÿves", "Šárka", "Žofia", "Ægir", "Øyvind", "Groß", "Noël", "L'HAŸ",
        ] {
            assert!(name(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn names_refuse_what_an_insurer_cannot_take() {
        // U+202E RIGHT-TO-LEFT OVERRIDE at the 4th character.
        let e = name("DUP\u{202e}TNO").unwrap_err();
        assert_eq!(
            e.0,
            "character U+202E at position 4 is not allowed in a name: letters, space, hyphen (-) \
             and apostrophe (') only"
        );
        // NUL, tab, escape, emoji (U+1F600), a Polish Ł (outside Latin-9), a digit.
        for (n, shown, at) in [
            ("A\u{0}B", "U+0000", 2),
            ("A\tB", "U+0009", 2),
            ("A\u{1b}[31mB", "U+001B", 2),
            ("JO\u{1f600}", "U+1F600", 3),
            ("\u{141}UKASZ", "U+0141", 1),
            ("LOUIS14", "'1' (U+0031)", 6),
            ("A\u{200b}B", "U+200B", 2),
        ] {
            let e = name(n).unwrap_err().0;
            assert!(
                e.starts_with(&format!("character {shown} at position {at} ")),
                "{n:?}: {e}"
            );
        }
        assert_eq!(name("").unwrap_err().0, "is empty");
        assert_eq!(name("   ").unwrap_err().0, "is empty");
        // 10,000 letters: refused on the length, counted in characters (é is one).
        let long = "é".repeat(10_000);
        assert_eq!(
            name(&long).unwrap_err().0,
            "is 10000 characters long: at most 80"
        );
        assert!(name(&"A".repeat(80)).is_ok());
        assert!(name(&"A".repeat(81)).is_err());
        assert_eq!(
            name("JEAN  PIERRE").unwrap_err().0,
            "U+0020 then U+0020 at positions 5-6: one space, hyphen or apostrophe between two \
             letters"
        );
        assert_eq!(
            name("-JEAN").unwrap_err().0,
            "begins with '-' (U+002D): a name begins with a letter"
        );
        assert_eq!(
            name("JEAN-").unwrap_err().0,
            "ends with '-' (U+002D): a name ends with a letter"
        );
    }

    #[test]
    fn free_text_refuses_controls_bidi_and_emoji() {
        assert_eq!(free_text("", 200).unwrap(), "");
        assert!(free_text("carte Vitale oubliée (patient âgé) : 2 €", 200).is_ok());
        let e = free_text("oubli\u{202e}", 200).unwrap_err().0;
        assert!(e.starts_with("character U+202E at position 6 "), "{e}");
        let e = free_text("a\u{7f}", 200).unwrap_err().0;
        assert!(e.starts_with("character U+007F at position 2 "), "{e}");
        let e = free_text("ok \u{1f44d}", 200).unwrap_err().0;
        assert!(e.starts_with("character U+1F44D at position 4 "), "{e}");
        let e = free_text("soft\u{ad}hyphen", 200).unwrap_err().0;
        assert!(e.starts_with("character U+00AD at position 5 "), "{e}");
        assert_eq!(
            free_text(&"x".repeat(201), 200).unwrap_err().0,
            "is 201 characters long: at most 200"
        );
    }

    #[test]
    fn codes_digits_and_keys() {
        assert!(code("DEQP003", ACT_CODE_MAX).is_ok());
        assert!(code("G", ACT_CODE_MAX).is_ok());
        assert_eq!(
            code("g", ACT_CODE_MAX).unwrap_err().0,
            "character 'g' (U+0067) at position 1 is not allowed: uppercase letters A-Z and \
             digits only"
        );
        assert_eq!(
            code(&"G".repeat(5000), ACT_CODE_MAX).unwrap_err().0,
            "is 5000 characters long: at most 16"
        );
        assert_eq!(code("", ACT_CODE_MAX).unwrap_err().0, "is empty");
        assert!(code("É", ACT_CODE_MAX).is_err());
        assert!(digits("75123455", 8).is_ok());
        assert_eq!(
            digits("7512345", 8).unwrap_err().0,
            "is 7 characters long: 8 digits"
        );
        assert_eq!(
            digits("7512345X", 8).unwrap_err().0,
            "character 'X' (U+0058) at position 8 is not a digit"
        );
        assert!(visible_ascii("visit-2026-11-30-0042", 128).is_ok());
        assert!(visible_ascii("0190c8a2-7b1e-7c4a-9f3e-1a2b3c4d5e6f", 128).is_ok());
        assert_eq!(
            visible_ascii("a b", 128).unwrap_err().0,
            "character U+0020 at position 2 is not allowed: visible ASCII characters only (! to ~)"
        );
        assert!(visible_ascii(&"k".repeat(129), 128).is_err());
    }

    #[test]
    fn show_prints_only_visible_ascii() {
        assert_eq!(show('x'), "'x' (U+0078)");
        assert_eq!(show('\u{202e}'), "U+202E");
        assert_eq!(show(' '), "U+0020");
        assert_eq!(show('é'), "U+00E9");
    }
}
