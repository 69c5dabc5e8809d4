//! Validation rules: check digits, number ranges and issuer prefixes that turn a shape into a
//! finding. Each function takes the candidate text and says whether it is the real thing;
//! none allocates more than the candidate's length or loops beyond it.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The ASCII digits of `text` as values 0..=9, ignoring everything else.
pub fn digits(text: &str) -> Vec<u8> {
    text.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

/// The Luhn (mod 10) check that card numbers carry in their last digit.
pub fn luhn(digits: &[u8]) -> bool {
    if digits.len() < 2 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The leading digits of `digits` as a number (at most 6 of them).
fn prefix(digits: &[u8], count: usize) -> u32 {
    digits
        .iter()
        .take(count)
        .fold(0, |acc, &d| acc * 10 + u32::from(d))
}

/// Whether `digits` is a payment card number: an issuer (IIN) range of a card network with a
/// length that network issues, a Luhn check digit, and not one digit repeated (test fillers).
pub fn payment_card(digits: &[u8]) -> bool {
    let length = digits.len();
    if !(13..=19).contains(&length) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let (p1, p2, p3, p4, p6) = (
        prefix(digits, 1),
        prefix(digits, 2),
        prefix(digits, 3),
        prefix(digits, 4),
        prefix(digits, 6),
    );
    let issued = match () {
        // Visa.
        () if p1 == 4 => matches!(length, 13 | 16 | 19),
        // Mastercard, including the 2-series.
        () if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) => length == 16,
        // American Express.
        () if p2 == 34 || p2 == 37 => length == 15,
        // Discover.
        () if p4 == 6011
            || (644..=649).contains(&p3)
            || p2 == 65
            || (622126..=622925).contains(&p6) =>
        {
            (16..=19).contains(&length)
        }
        // UnionPay.
        () if p2 == 62 => (16..=19).contains(&length),
        // JCB.
        () if (3528..=3589).contains(&p4) => (16..=19).contains(&length),
        // Diners Club.
        () if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 => {
            (14..=19).contains(&length)
        }
        // Maestro.
        () if matches!(p2, 50 | 56..=58) || p1 == 6 => (12..=19).contains(&length),
        () => false,
    };
    issued && luhn(digits)
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: [(&str, usize); 89] = [
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
    ("SY", 31),
];

/// The ISO 7064 mod-97 remainder of an alphanumeric string, letters counting as 10..=35.
/// None when a character is neither a digit nor an ASCII letter.
fn mod97(text: impl Iterator<Item = u8>) -> Option<u32> {
    let mut remainder = 0u32;
    for byte in text {
        let value = match byte {
            b'0'..=b'9' => u32::from(byte - b'0'),
            b'A'..=b'Z' => u32::from(byte - b'A') + 10,
            b'a'..=b'z' => u32::from(byte - b'a') + 10,
            _ => return None,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    Some(remainder)
}

/// Whether the alphanumeric string passes the ISO 7064 mod-97-10 check (remainder 1) that IBANs
/// carry, for configured validators on other numbers of that scheme.
pub fn mod97_valid(text: &str) -> bool {
    let compact: Vec<u8> = text.bytes().filter(|b| !matches!(b, b' ' | b'-')).collect();
    compact.len() >= 3 && mod97(compact.iter().copied()) == Some(1)
}

/// The IBAN that `text` starts with (spaces allowed between characters), compacted and
/// upper-cased, when its country is known, its length is that country's and its check digits
/// pass mod-97. Trailing text after the country's length is ignored, so a greedy candidate
/// that ran into the next word still validates.
pub fn iban(text: &str) -> Option<String> {
    let compact: Vec<u8> = text
        .bytes()
        .filter(|&b| b != b' ')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    let country = std::str::from_utf8(compact.get(..2)?).ok()?;
    let length = IBAN_LENGTHS
        .iter()
        .find(|(code, _)| *code == country)
        .map(|(_, length)| *length)?;
    let iban = compact.get(..length)?;
    if !iban[2..4].iter().all(u8::is_ascii_digit) || !iban.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    // The check moves the country and check digits to the end.
    let rotated = iban[4..].iter().chain(&iban[..4]).copied();
    (mod97(rotated) == Some(1)).then(|| String::from_utf8_lossy(iban).into_owned())
}

/// US Social Security number rules: area not 000, 666 or 900-999; group not 00; serial not
/// 0000; and not the numbers that were published and so never belong to anyone.
pub fn us_ssn(digits: &[u8]) -> bool {
    if digits.len() != 9 {
        return false;
    }
    let area = prefix(digits, 3);
    let group = prefix(&digits[3..], 2);
    let serial = prefix(&digits[5..], 4);
    let published = matches!(
        (area, group, serial),
        (78, 5, 1120) | (219, 9, 9999) | (123, 45, 6789)
    );
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0 && !published
}

/// Dutch citizen service number (BSN): nine digits passing the "11-proof" (weights 9..2 and -1).
pub fn dutch_bsn(digits: &[u8]) -> bool {
    if digits.len() != 9 || digits.iter().all(|&d| d == 0) {
        return false;
    }
    let sum: i32 = digits
        .iter()
        .zip([9, 8, 7, 6, 5, 4, 3, 2, -1])
        .map(|(&d, weight)| i32::from(d) * weight)
        .sum();
    sum % 11 == 0
}

const DNI_LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";

/// Spanish DNI (8 digits and a letter) or NIE (X, Y or Z, 7 digits and a letter): the letter is
/// the number mod 23 looked up in the official table; NIEs count X, Y, Z as 0, 1, 2.
pub fn spanish_id(text: &str) -> bool {
    let compact: Vec<u8> = text
        .bytes()
        .filter(|&b| b != b'-' && b != b' ')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    let [body @ .., letter] = compact.as_slice() else {
        return false;
    };
    let (lead, rest) = match body.first() {
        Some(b'X') => (0, &body[1..]),
        Some(b'Y') => (1, &body[1..]),
        Some(b'Z') => (2, &body[1..]),
        _ => (0, body),
    };
    let expected_digits = if rest.len() == body.len() { 8 } else { 7 };
    if rest.len() != expected_digits || !rest.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let number = rest
        .iter()
        .fold(lead, |acc: u64, &d| acc * 10 + u64::from(d - b'0'));
    DNI_LETTERS.get((number % 23) as usize) == Some(letter)
}

/// French social security number (NIR): sex 1 or 2, birth month 01-12 (or 20-42 and 50-99 for
/// people registered without a known month), department digits (Corsica as 2A/2B), and a two
/// digit key equal to 97 - (number mod 97).
pub fn french_nir(text: &str) -> bool {
    let compact: Vec<u8> = text
        .bytes()
        .filter(|&b| b != b' ' && b != b'.' && b != b'-')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if compact.len() != 15 || !matches!(compact[0], b'1' | b'2') {
        return false;
    }
    // Corsica's departments replace their letter so that the key stays numeric.
    let department = match (compact[5], compact[6]) {
        (b'2', b'A') => [b'1', b'9'],
        (b'2', b'B') => [b'1', b'8'],
        (a, b) => [a, b],
    };
    let mut number_text = compact[..13].to_vec();
    number_text[5..7].copy_from_slice(&department);
    if !number_text
        .iter()
        .chain(&compact[13..])
        .all(u8::is_ascii_digit)
    {
        return false;
    }
    let month = u32::from(compact[3] - b'0') * 10 + u32::from(compact[4] - b'0');
    if !((1..=12).contains(&month) || (20..=42).contains(&month) || (50..=99).contains(&month)) {
        return false;
    }
    let number = number_text
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    let key = u64::from(compact[13] - b'0') * 10 + u64::from(compact[14] - b'0');
    key == 97 - number % 97
}

/// UK National Insurance number format rules (it has no check digit): two prefix letters from
/// the allowed sets and not an unissued pair, six digits, suffix A-D.
pub fn uk_nino(text: &str) -> bool {
    let compact: Vec<u8> = text
        .bytes()
        .filter(|&b| b != b' ')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    let [first, second, number @ .., suffix] = compact.as_slice() else {
        return false;
    };
    let first_ok = !b"DFIQUV".contains(first) && first.is_ascii_uppercase();
    let second_ok = !b"DFIQUVO".contains(second) && second.is_ascii_uppercase();
    let pair = [*first, *second];
    let unissued = matches!(&pair, b"BG" | b"GB" | b"KN" | b"NK" | b"NT" | b"TN" | b"ZZ");
    first_ok
        && second_ok
        && !unissued
        && number.len() == 6
        && number.iter().all(u8::is_ascii_digit)
        && (b'A'..=b'D').contains(suffix)
}

/// A calendar date in one of the common written orders (YYYY-MM-DD, DD.MM.YYYY, DD/MM/YYYY,
/// MM/DD/YYYY) with a year between 1900 and 2100 and a day that exists in that month.
pub fn date(text: &str) -> bool {
    let parts: Vec<&str> = text.split(['-', '/', '.']).collect();
    let [a, b, c] = parts.as_slice() else {
        return false;
    };
    let number = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (Some(x), Some(y), Some(z)) = (number(a), number(b), number(c)) else {
        return false;
    };
    let valid = |year: u32, month: u32, day: u32| {
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if year.is_multiple_of(4)
                && (!year.is_multiple_of(100) || year.is_multiple_of(400)) =>
            {
                29
            }
            2 => 28,
            _ => 0,
        };
        (1900..=2100).contains(&year) && (1..=days).contains(&day)
    };
    if a.len() == 4 {
        valid(x, y, z)
    } else {
        c.len() == 4 && (valid(z, y, x) || valid(z, x, y))
    }
}

/// A phone number: E.164 (`+`, a country code not starting with 0, 8 to 15 digits in all) in
/// any common grouping, or a national number in a grouping people write (North American
/// `(415) 555-0132` / `415-555-0132`, trunk-prefixed `020 7946 0958`, `06 12 34 56 78`). Bare
/// digit runs are phone numbers only when the caller knows the field is one (`contextual`).
pub fn phone(text: &str, contextual: bool) -> bool {
    let digits = digits(text);
    let groups: Vec<&str> = text
        .split([' ', '-', '.', '(', ')', '/'])
        .filter(|group| !group.is_empty())
        .collect();
    if text.starts_with('+') {
        return (8..=15).contains(&digits.len())
            && digits.first() != Some(&0)
            && (groups.len() == 1
                || groups
                    .iter()
                    .all(|group| group.trim_start_matches('+').len() <= 8));
    }
    if groups.len() == 1 {
        return contextual && (7..=13).contains(&digits.len());
    }
    // North American numbering: area code and exchange start 2-9.
    let nanp = digits.len() == 10
        && digits[0] >= 2
        && digits[3] >= 2
        && groups.iter().map(|g| g.len()).eq([3, 3, 4])
        && !text.contains('/');
    // A trunk prefix 0, then groups of 2 to 5 digits, 10 or 11 digits in all.
    let national = digits.first() == Some(&0)
        && digits.get(1) != Some(&0)
        && (10..=11).contains(&digits.len())
        && groups.iter().all(|g| (2..=8).contains(&g.len()))
        && !text.contains('.')
        || digits.first() == Some(&0)
            && text.contains('.')
            && groups.iter().all(|g| g.len() == 2)
            && digits.len() == 10;
    nanp || national
}

/// Addresses that name the inside of a network: private (RFC 1918), loopback, link-local,
/// shared (RFC 6598) for IPv4; loopback, unique local (fc00::/7), link-local (fe80::/10) and
/// IPv4-mapped internal addresses for IPv6.
pub fn internal_ip(text: &str) -> bool {
    if let Ok(v4) = text.parse::<Ipv4Addr>() {
        return internal_v4(v4);
    }
    match text.parse::<Ipv6Addr>() {
        Ok(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || first & 0xfe00 == 0xfc00
                || first & 0xffc0 == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(internal_v4)
        }
        Err(_) => false,
    }
}

fn internal_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || (a == 100 && (64..128).contains(&b))
}

/// Whether a token looks random enough to be a credential rather than a placeholder
/// (`ghp_XXXXXXXX...`, `sk_live_0000...`): at least 6 distinct characters in its body.
pub fn random_enough(body: &str) -> bool {
    let mut seen = [false; 256];
    body.bytes().for_each(|b| seen[usize::from(b)] = true);
    seen.iter().filter(|&&s| s).count() >= 6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Vec<u8> {
        digits(text)
    }

    #[test]
    fn cards_need_a_network_prefix_and_luhn() {
        for valid in [
            "4111111111111111",
            "4012888888881881",
            "5555555555554444",
            "2223003122003222",
            "378282246310005",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
            "6200000000000005",
        ] {
            assert!(payment_card(&d(valid)), "{valid} is a card");
        }
        for invalid in [
            "4111111111111112",   // Luhn fails
            "1234567812345670",   // Luhn passes, no network starts with 1
            "9999999999999995",   // no network
            "4444444444444444",   // one digit repeated
            "378282246310005000", // Amex prefix, wrong length
            "1700000000000",      // a millisecond timestamp
        ] {
            assert!(!payment_card(&d(invalid)), "{invalid} is not a card");
        }
    }

    #[test]
    fn iban_needs_its_country_length_and_mod97() {
        assert_eq!(
            iban("DE89 3704 0044 0532 0130 00").as_deref(),
            Some("DE89370400440532013000")
        );
        assert!(iban("GB82WEST12345698765432").is_some());
        assert!(iban("fr1420041010050500013m02606").is_some());
        assert!(iban("NL91ABNA0417164300 and more").is_some());
        assert!(
            iban("DE88 3704 0044 0532 0130 00").is_none(),
            "wrong check digits"
        );
        assert!(
            iban("DE89 3704 0044 0532 0130").is_none(),
            "too short for DE"
        );
        assert!(iban("QQ89370400440532013000").is_none(), "no such country");
        assert!(mod97_valid("370400440532013000DE89"));
        assert!(!mod97_valid("370400440532013000DE88"));
    }

    #[test]
    fn ssn_ranges_that_are_never_issued_are_rejected() {
        assert!(us_ssn(&d("536-22-1234")));
        for invalid in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "987-65-4321",
            "123-00-4567",
            "123-45-0000",
            "078-05-1120",
        ] {
            assert!(!us_ssn(&d(invalid)), "{invalid}");
        }
    }

    #[test]
    fn national_ids_check_their_check_digits() {
        assert!(dutch_bsn(&d("111222333")));
        assert!(dutch_bsn(&d("123456782")));
        assert!(!dutch_bsn(&d("123456789")));
        assert!(spanish_id("12345678Z"));
        assert!(spanish_id("12345678-z"));
        assert!(spanish_id("X1234567L"));
        assert!(spanish_id("Y1234567X"));
        assert!(!spanish_id("12345678A"));
        assert!(!spanish_id("X1234567A"));
        assert!(!spanish_id("1234567Z"));
        assert!(french_nir("1 84 12 76 451 089 46"));
        assert!(french_nir("269054958815780"));
        const CORSICAN_NIR: &str = "2 69 05 2A 588 157 17";
        assert!(!french_nir("184127645108947"), "wrong key");
        assert!(!french_nir("384127645108946"), "sex digit 3");
        assert!(french_nir(CORSICAN_NIR));
        assert!(uk_nino("AB 12 34 56 C"));
        assert!(uk_nino("ce123456a"));
        assert!(!uk_nino("GB123456A"), "unissued prefix");
        assert!(!uk_nino("DA123456A"), "D is never a first letter");
        assert!(!uk_nino("AB123456E"), "suffix beyond D");
    }

    #[test]
    fn dates_must_exist() {
        assert!(date("1984-02-29"));
        assert!(date("29.02.1984"));
        assert!(date("12/31/1999"));
        assert!(!date("1985-02-29"));
        assert!(!date("2024-13-01"));
        assert!(!date("1.2.3"));
        assert!(!date("10.0.19041"));
    }

    #[test]
    fn phones_in_common_formats_and_not_versions_or_dates() {
        for valid in [
            "+14155550132",
            "+44 20 7946 0958",
            "+49 (0)30 901820",
            "(415) 555-0132",
            "415-555-0132",
            "415.555.0132",
            "020 7946 0958",
            "06 12 34 56 78",
            "06.12.34.56.78",
            "030 901820 00",
        ] {
            assert!(phone(valid, false), "{valid} is a phone number");
        }
        for invalid in [
            "1.2.3.4",
            "10.0.19041.1",
            "2024-01-02",
            "123-45-6789",
            "+0123456789",
            "+1234",
            "4155550132",
            "1700000000",
            "v2.10.3",
            "12 34",
        ] {
            assert!(!phone(invalid, false), "{invalid} is not a phone number");
        }
        assert!(phone("4155550132", true));
    }

    #[test]
    fn internal_addresses_only() {
        for internal in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(internal_ip(internal), "{internal}");
        }
        for public in [
            "8.8.8.8",
            "172.32.0.1",
            "2001:db8::1",
            "2606:4700::1111",
            "999.1.1.1",
        ] {
            assert!(!internal_ip(public), "{public}");
        }
    }
}
