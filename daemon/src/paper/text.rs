//! The words of the paper duplicate, before any PDF: money from integer cents, dates from the
//! sheet's compact forms, text in the Windows ANSI (WinAnsi) code page the base-14 fonts read,
//! and long lines cut at spaces. Pure: no I/O, no clock.

/// `cents` in euros with a decimal comma and the euro sign: `1900` → `"19,00 €"`,
/// `123456` → `"1 234,56 €"` (thousands set apart by a space, as French does). Integer
/// arithmetic only: no float ever holds an amount.
pub fn euros(cents: u64) -> String {
    let (units, rest) = (cents / 100, cents % 100);
    let digits = units.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(' ');
        }
        grouped.push(c);
    }
    format!("{grouped},{rest:02} €")
}

/// A coefficient in hundredths as written on a sheet: `100` → `"1"`, `150` → `"1,5"`,
/// `125` → `"1,25"`.
pub fn coefficient(hundredths: u32) -> String {
    let (units, rest) = (hundredths / 100, hundredths % 100);
    match rest {
        0 => units.to_string(),
        r if r % 10 == 0 => format!("{units},{}", r / 10),
        r => format!("{units},{r:02}"),
    }
}

/// `YYYYMMDD` as `DD/MM/YYYY`; any other text is shown as it is.
pub fn date(compact: &str) -> String {
    let b = compact.as_bytes();
    if b.len() == 8 && b.iter().all(u8::is_ascii_digit) {
        format!("{}/{}/{}", &compact[6..8], &compact[4..6], &compact[0..4])
    } else {
        compact.to_string()
    }
}

/// `YYYYMMDDHHMMSSZ` as `DD/MM/YYYY HH:MM:SS UTC`; any other text is shown as it is.
pub fn time(compact: &str) -> String {
    let b = compact.as_bytes();
    if b.len() == 15 && b[14] == b'Z' && b[..14].iter().all(u8::is_ascii_digit) {
        format!(
            "{} {}:{}:{} UTC",
            date(&compact[..8]),
            &compact[8..10],
            &compact[10..12],
            &compact[12..14]
        )
    } else {
        compact.to_string()
    }
}

/// The WinAnsi byte of `c`, if the code page has it: ASCII's printable characters, Latin-1's
/// upper half (`é`, `ç`, `ß` …) and, in 0x80–0x9F, the euro sign, the Latin-9 letters Œ œ Š š
/// Ž ž Ÿ, dashes, quotes and the ellipsis.
fn win_ansi_byte(c: char) -> Option<u8> {
    let n = u32::from(c);
    if (0x20..0x7F).contains(&n) || (0xA0..=0xFF).contains(&n) {
        // Proven by the ranges: the code point fits a byte and is its WinAnsi code.
        return u8::try_from(n).ok();
    }
    Some(match c {
        '€' => 0x80,
        '‚' => 0x82,
        'ƒ' => 0x83,
        '„' => 0x84,
        '…' => 0x85,
        '†' => 0x86,
        '‡' => 0x87,
        'ˆ' => 0x88,
        '‰' => 0x89,
        'Š' => 0x8A,
        '‹' => 0x8B,
        'Œ' => 0x8C,
        'Ž' => 0x8E,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '˜' => 0x98,
        '™' => 0x99,
        'š' => 0x9A,
        '›' => 0x9B,
        'œ' => 0x9C,
        'ž' => 0x9E,
        'Ÿ' => 0x9F,
        // A narrow no-break space (French before `:` or `€`) prints as a no-break space.
        '\u{202F}' => 0xA0,
        _ => return None,
    })
}

/// `text` in WinAnsi: each character the code page lacks (a control character, a letter of
/// another script) becomes `?`, so the line keeps its length and nothing is dropped silently.
pub fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| win_ansi_byte(c).unwrap_or(b'?'))
        .collect()
}

/// `text` cut into lines of at most `width` characters, at spaces where it can (a word longer
/// than a line is cut where it must); line breaks in `text` are kept. Never empty.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split(' ') {
            let mut word: Vec<char> = word.chars().collect();
            loop {
                let used = line.chars().count();
                let sep = usize::from(used > 0);
                if used + sep + word.len() <= width {
                    if sep == 1 {
                        line.push(' ');
                    }
                    line.extend(word.iter());
                    break;
                }
                if used > 0 {
                    out.push(std::mem::take(&mut line));
                    continue;
                }
                // A word longer than a whole line: cut it.
                let rest = word.split_off(width);
                out.push(word.iter().collect());
                word = rest;
            }
        }
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_are_euros_with_a_comma_never_a_float() {
        // G 30 € at 70 % = 21 €, less the 2 € participation: 2 100 − 200 = 1 900 cents.
        assert_eq!(euros(2100 - 200), "19,00 €");
        assert_eq!(euros(0), "0,00 €");
        assert_eq!(euros(5), "0,05 €");
        assert_eq!(euros(99_999), "999,99 €");
        // 1 234,56 €: thousands set apart.
        assert_eq!(euros(123_456), "1 234,56 €");
        assert_eq!(euros(100_000_000), "1 000 000,00 €");
        // The largest amount there is still prints exactly (2^64 − 1 cents).
        assert_eq!(euros(u64::MAX), "184 467 440 737 095 516,15 €");
        assert_eq!(coefficient(100), "1");
        assert_eq!(coefficient(150), "1,5");
        assert_eq!(coefficient(125), "1,25");
        assert_eq!(coefficient(5), "0,05");
    }

    #[test]
    fn dates_are_shown_day_first_and_odd_text_as_it_is() {
        assert_eq!(date("20261207"), "07/12/2026");
        assert_eq!(time("20261207101502Z"), "07/12/2026 10:15:02 UTC");
        assert_eq!(date("2026-12-07"), "2026-12-07");
        assert_eq!(time("20261207"), "20261207");
    }

    #[test]
    fn accented_names_are_encoded_in_win_ansi() {
        // Latin-1's upper half is WinAnsi's: é E9, ï EF, ç E7, Ø D8.
        assert_eq!(win_ansi("Hélène"), b"H\xE9l\xE8ne");
        assert_eq!(win_ansi("Loïc Çağ"), b"Lo\xEFc \xC7a?");
        // Latin-9's own letters and the euro sign are in 0x80–0x9F.
        assert_eq!(
            win_ansi("Œuvre Šárka Žofie Ÿves"),
            b"\x8Cuvre \x8A\xE1rka \x8Eofie \x9Fves"
        );
        assert_eq!(win_ansi("œ š ž €"), b"\x9C \x9A \x9E \x80");
        assert_eq!(
            win_ansi("duplicata — 19,00 €"),
            b"duplicata \x97 19,00 \x80"
        );
        // Not in the code page: one `?` each, the length kept.
        assert_eq!(win_ansi("李\u{7}\u{301}"), b"???");
    }

    #[test]
    fn long_lines_are_cut_at_spaces() {
        assert_eq!(wrap("un deux trois", 8), vec!["un deux", "trois"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("a\nb", 10), vec!["a", "b"]);
        assert_eq!(wrap("", 10), vec![""]);
        for line in wrap(&"mot ".repeat(100), 30) {
            assert!(line.chars().count() <= 30, "{line}");
        }
    }
}
