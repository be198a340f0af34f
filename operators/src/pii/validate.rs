//! Checksums and number-plan rules that turn a pattern match into a validated entity.
//!
//! Pure functions over ASCII digits or alphanumerics; each takes the entity with its
//! separators already stripped. None of them allocates or panics on any input.

/// Luhn (mod 10) over a string of ASCII digits; false on any other character.
pub fn luhn(digits: &str) -> bool {
    let b = digits.as_bytes();
    if b.len() < 2 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut sum = 0u32;
    for (i, c) in b.iter().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// Every digit the same (`0000 0000`, `4444...`): a placeholder, not an identifier.
pub fn all_same(digits: &str) -> bool {
    let b = digits.as_bytes();
    b.first().is_some_and(|f| b.iter().all(|c| c == f))
}

/// A payment card number: 13 to 19 digits, a known issuer prefix (IIN) and Luhn.
pub fn card_number(digits: &str) -> bool {
    let n = digits.len();
    if !(13..=19).contains(&n) || all_same(digits) || !luhn(digits) {
        return false;
    }
    let p = |k: usize| {
        digits
            .get(..k)
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let known = match digits.as_bytes()[0] {
        b'4' => matches!(n, 13 | 16 | 19), // Visa
        b'5' => (51..=55).contains(&p(2)) && n == 16 || (50..=59).contains(&p(2)) && n >= 12, // Mastercard, Maestro
        b'2' => (2221..=2720).contains(&p(4)) && n == 16, // Mastercard 2-series
        b'3' => {
            matches!(p(2), 34 | 37) && n == 15                           // Amex
            || (3528..=3589).contains(&p(4)) && n >= 16                       // JCB
            || (matches!(p(2), 36 | 38 | 39) || (300..=305).contains(&p(3))) && (14..=19).contains(&n)
        } // Diners
        b'6' => {
            p(4) == 6011
                || p(2) == 65
                || (644..=649).contains(&p(3))
                || p(2) == 62
                || (60..=69).contains(&p(2))
        } // Discover, UnionPay, Maestro
        _ => false,
    };
    known
}

/// ABA routing transit number: 9 digits, a Federal Reserve prefix and the 3-7-1 checksum.
pub fn aba_routing(digits: &str) -> bool {
    let b = digits.as_bytes();
    if b.len() != 9 || !b.iter().all(u8::is_ascii_digit) || all_same(digits) {
        return false;
    }
    let d: Vec<u32> = b.iter().map(|c| u32::from(c - b'0')).collect();
    let prefix = d[0] * 10 + d[1];
    let prefix_ok = matches!(prefix, 0..=12 | 21..=32 | 61..=72 | 80);
    let sum = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8]);
    prefix_ok && sum % 10 == 0
}

/// A US Social Security number: area 001-899 except 666, group 01-99, serial 0001-9999,
/// and none of the numbers the SSA has voided or that appear in advertising.
pub fn us_ssn(digits: &str) -> bool {
    let Some((area, group, serial)) = split_3_2_4(digits) else {
        return false;
    };
    if matches!(digits, "123456789" | "078051120" | "219099999") || all_same(digits) {
        return false;
    }
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// A US ITIN: 9XX-GG-SSSS with the group in 50-65, 70-88, 90-92 or 94-99.
pub fn us_itin(digits: &str) -> bool {
    let Some((area, group, _)) = split_3_2_4(digits) else {
        return false;
    };
    (900..=999).contains(&area) && matches!(group, 50..=65 | 70..=88 | 90..=92 | 94..=99)
}

fn split_3_2_4(digits: &str) -> Option<(u32, u32, u32)> {
    if digits.len() != 9 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((
        digits[..3].parse().ok()?,
        digits[3..5].parse().ok()?,
        digits[5..].parse().ok()?,
    ))
}

/// A UK NHS number: 10 digits whose last is the mod-11 check digit of the first nine.
pub fn nhs_number(digits: &str) -> bool {
    let b = digits.as_bytes();
    if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) || all_same(digits) {
        return false;
    }
    let sum: u32 = b[..9]
        .iter()
        .enumerate()
        .map(|(i, c)| u32::from(c - b'0') * (10 - i as u32))
        .sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return false,
        c => c,
    };
    check == u32::from(b[9] - b'0')
}

/// A Canadian Social Insurance Number: 9 digits, Luhn, first digit not 0 or 8.
pub fn ca_sin(digits: &str) -> bool {
    digits.len() == 9
        && !matches!(digits.as_bytes()[0], b'0' | b'8')
        && !all_same(digits)
        && luhn(digits)
}

/// A 17-character vehicle identification number with a valid ISO 3779 check digit
/// (position 9); I, O and Q never appear.
pub fn vin(s: &str) -> bool {
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    let b = s.as_bytes();
    if b.len() != 17 {
        return false;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A' | b'J' => 1,
            b'B' | b'K' | b'S' => 2,
            b'C' | b'L' | b'T' => 3,
            b'D' | b'M' | b'U' => 4,
            b'E' | b'N' | b'V' => 5,
            b'F' | b'W' => 6,
            b'G' | b'P' | b'X' => 7,
            b'H' | b'Y' => 8,
            b'R' | b'Z' => 9,
            _ => return None,
        })
    };
    let mut sum = 0;
    for (c, w) in b.iter().zip(WEIGHTS) {
        match value(*c) {
            Some(v) => sum += v * w,
            None => return false,
        }
    }
    let check = match sum % 11 {
        10 => b'X',
        r => b'0' + r as u8,
    };
    b[8] == check
}

/// The length of an IBAN for each country that issues them (SWIFT IBAN registry).
pub fn iban_length(country: &str) -> Option<usize> {
    const LENGTHS: &[(&str, usize)] = &[
        ("AD", 24),
        ("AE", 23),
        ("AL", 28),
        ("AT", 20),
        ("AZ", 28),
        ("BA", 20),
        ("BE", 16),
        ("BG", 22),
        ("BH", 22),
        ("BI", 27),
        ("BR", 29),
        ("BY", 28),
        ("CH", 21),
        ("CR", 22),
        ("CY", 28),
        ("CZ", 24),
        ("DE", 22),
        ("DJ", 27),
        ("DK", 18),
        ("DO", 28),
        ("EE", 20),
        ("EG", 29),
        ("ES", 24),
        ("FI", 18),
        ("FK", 18),
        ("FO", 18),
        ("FR", 27),
        ("GB", 22),
        ("GE", 22),
        ("GI", 23),
        ("GL", 18),
        ("GR", 27),
        ("GT", 28),
        ("HR", 21),
        ("HU", 28),
        ("IE", 22),
        ("IL", 23),
        ("IQ", 23),
        ("IS", 26),
        ("IT", 27),
        ("JO", 30),
        ("KW", 30),
        ("KZ", 20),
        ("LB", 28),
        ("LC", 32),
        ("LI", 21),
        ("LT", 20),
        ("LU", 20),
        ("LV", 21),
        ("LY", 25),
        ("MC", 27),
        ("MD", 24),
        ("ME", 22),
        ("MK", 19),
        ("MN", 20),
        ("MR", 27),
        ("MT", 31),
        ("MU", 30),
        ("NI", 28),
        ("NL", 18),
        ("NO", 15),
        ("OM", 23),
        ("PK", 24),
        ("PL", 28),
        ("PS", 29),
        ("PT", 25),
        ("QA", 29),
        ("RO", 24),
        ("RS", 22),
        ("RU", 33),
        ("SA", 24),
        ("SC", 31),
        ("SD", 18),
        ("SE", 24),
        ("SI", 19),
        ("SK", 24),
        ("SM", 27),
        ("SO", 23),
        ("ST", 25),
        ("SV", 28),
        ("TL", 23),
        ("TN", 24),
        ("TR", 26),
        ("UA", 29),
        ("VA", 22),
        ("VG", 24),
        ("XK", 20),
        ("YE", 30),
    ];
    LENGTHS.iter().find(|(c, _)| *c == country).map(|(_, n)| *n)
}

/// An IBAN without spaces: the country's length and ISO 7064 mod-97 = 1.
pub fn iban(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 15
        || !b[..2].iter().all(u8::is_ascii_uppercase)
        || !b[2..4].iter().all(u8::is_ascii_digit)
        || !b
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return false;
    }
    if iban_length(&s[..2]) != Some(b.len()) {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in b[4..].iter().chain(&b[..4]) {
        if c.is_ascii_digit() {
            rem = (rem * 10 + u32::from(c - b'0')) % 97;
        } else {
            let v = u32::from(c - b'A') + 10;
            rem = (rem * 100 + v) % 97;
        }
    }
    rem == 1
}

/// ISO 3166-1 alpha-2 country codes (and XK), for the country part of a SWIFT/BIC code.
pub fn iso_country(code: &str) -> bool {
    const CODES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW";
    code.len() == 2 && CODES.split(' ').any(|c| c == code)
}

/// A UK National Insurance number without spaces: two prefix letters (D, F, I, Q, U, V
/// never; O never second; BG, GB, KN, NK, NT, TN, ZZ never), six digits, suffix A-D.
pub fn uk_nino(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 9 {
        return false;
    }
    let bad_first = |c: u8| matches!(c, b'D' | b'F' | b'I' | b'Q' | b'U' | b'V');
    let ok = b[0].is_ascii_uppercase()
        && b[1].is_ascii_uppercase()
        && !bad_first(b[0])
        && !bad_first(b[1])
        && b[1] != b'O'
        && b[2..8].iter().all(u8::is_ascii_digit)
        && matches!(b[8], b'A'..=b'D');
    ok && !matches!(&s[..2], "BG" | "GB" | "KN" | "NK" | "NT" | "TN" | "ZZ")
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for c in s.bytes() {
        counts[usize::from(c)] += 1;
    }
    let n = s.len() as f64;
    if n == 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_accept_published_examples() {
        assert!(luhn("79927398713"));
        assert!(!luhn("79927398710"));
        assert!(card_number("4111111111111111"));
        assert!(card_number("378282246310005"));
        assert!(aba_routing("021000021"));
        assert!(!aba_routing("021000022"));
        assert!(iban("GB82WEST12345698765432"));
        assert!(iban("DE89370400440532013000"));
        assert!(!iban("DE89370400440532013001"));
        assert!(nhs_number("9434765919"));
        assert!(!nhs_number("9434765918"));
        assert!(ca_sin("130692544"));
        assert!(!ca_sin("046454286"), "0 is not an assigned first digit");
        assert!(vin("1HGCM82633A004352"));
        assert!(!vin("1HGCM82634A004352"));
        assert!(uk_nino("AB123456C"));
        assert!(!uk_nino("GB123456C"));
        assert!(us_ssn("536225784"));
        assert!(!us_ssn("666225784"));
        assert!(us_itin("912701234"));
        assert!(!us_itin("912401234"));
    }
}
