//! The built-in detectors. One automaton finds every candidate shape in a single pass over a
//! value; each candidate is then classified by content and only counts once its validation
//! (check digits, ranges, prefixes, nearby keywords) passes, so adding a detector adds an
//! alternative to the automaton, not a scan.

use intelligence::Severity;
use regex::bytes::{Regex, RegexBuilder};

use crate::detection::DataClass;
use crate::validate;

/// Candidate shapes, most specific first: at one start position the first alternative that
/// matches wins, so a grouped card number is not read as a phone number.
const CANDIDATES: &str = r"(?x-u)
    -----BEGIN\x20(?:[A-Z0-9]+\x20){0,3}PRIVATE\x20KEY(?:\x20BLOCK)?-----
  | eyJ[A-Za-z0-9_-]{2,4096}\.e[A-Za-z0-9_-]{2,8192}\.[A-Za-z0-9_-]{0,1024}
  | (?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}
  | gh[pousr]_[A-Za-z0-9]{36,251}
  | github_pat_[A-Za-z0-9_]{22,244}
  | xox[bpars]-[A-Za-z0-9-]{10,250}
  | [rs]k_live_[A-Za-z0-9]{10,247}
  | AIza[A-Za-z0-9_-]{35}
  | (?i:password|passwd|passphrase|pwd)[\x22']?[\x20\t]{0,3}[:=][\x20\t]{0,3}[\x22']?[^\x20\t\r\n\x22'&,;]{1,128}
  | [A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}
  | [A-Za-z0-9/+]{40}
  | [A-Za-z]{2}\x20?[0-9]{2}\x20?[0-9]{2}\x20?[0-9]{2}\x20?[A-Da-d]
  | [XYZxyz]-?[0-9]{7}-?[A-Za-z] | [0-9]{8}-?[A-Za-z]
  | [A-Za-z]{2}[0-9]{2}(?:\x20?[A-Za-z0-9]){11,32}
  | [0-9]{4}(?:[\x20-][0-9]{4}){3} | [0-9]{4}[\x20-][0-9]{6}[\x20-][0-9]{4,5}
  | [12]\x20?[0-9]{2}\x20?[0-9]{2}\x20?(?:[0-9]{2}|2[AaBb])\x20?[0-9]{3}\x20?[0-9]{3}\x20?[0-9]{2}
  | [0-9]{3}[\x20-][0-9]{2}[\x20-][0-9]{4}
  | [0-9]{4}-[0-9]{2}-[0-9]{2} | [0-9]{1,2}[./-][0-9]{1,2}[./-][0-9]{4}
  | [0-9]{1,3}(?:\.[0-9]{1,3}){3}
  | [0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}
  | \+[0-9](?:[\x20.-]?\(?[0-9]{1,5}\)?){1,7}
  | \(?[0-9]{2,5}\)?(?:[\x20./-][0-9]{2,5}){1,5}
  | [0-9]{7,19}
";

const DOB_KEYWORDS: &[&str] = &[
    "dob",
    "birth",
    "born",
    "bday",
    "geburtsdatum",
    "geboren",
    "naissance",
    "nacimiento",
    "nascita",
    "geboortedatum",
];
const SSN_KEYWORDS: &[&str] = &[
    "ssn",
    "social security",
    "social_security",
    "socialsecurity",
];
const BSN_KEYWORDS: &[&str] = &["bsn", "burgerservicenummer", "sofinummer", "sofi_nummer"];
const PHONE_KEYWORDS: &[&str] = &[
    "phone", "tel", "mobile", "cell", "fax", "msisdn", "whatsapp",
];
const AWS_SECRET_KEYWORDS: &[&str] = &[
    "aws_secret",
    "secret_access_key",
    "secretaccesskey",
    "aws secret",
];
const AWS_KEY_ID_PREFIXES: &[&str] = &[
    "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "ABIA", "ACCA",
];

/// Field names whose values are passwords whatever they look like.
const PASSWORD_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "pass",
    "new_password",
    "old_password",
    "current_password",
    "user_password",
];
/// Field names whose values are other secrets.
const SECRET_FIELDS: &[&str] = &[
    "secret",
    "client_secret",
    "api_secret",
    "app_secret",
    "secret_key",
    "private_key",
    "api_key",
    "apikey",
    "api-key",
    "x-api-key",
    "access_key",
    "secret_access_key",
    "aws_secret_access_key",
];

/// Bytes either side of a candidate that keyword-gated detectors look at.
pub const KEYWORD_WINDOW: usize = 48;

/// What the value was found under and in which message: keyword-gated detectors accept a
/// field name as their keyword (`{"dob": "1990-01-02"}`), and internal addresses are only
/// worth reporting in responses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    pub key: Option<&'a str>,
    pub internal_ips: bool,
}

/// A validated match in a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub kind: &'static str,
    pub class: DataClass,
    pub severity: Severity,
    pub start: usize,
    pub end: usize,
    /// What the evidence hash covers: digits only for numbers, compacted and upper-cased IBANs.
    pub normalized: String,
    /// Leading characters the evidence may show (see `Evidence::new`).
    pub reveal: usize,
}

#[derive(Debug, Clone)]
pub struct Builtin {
    candidates: Regex,
}

impl Builtin {
    pub fn new() -> Self {
        let candidates = RegexBuilder::new(CANDIDATES)
            .size_limit(32 << 20)
            .dfa_size_limit(32 << 20)
            .build();
        match candidates {
            Ok(candidates) => Self { candidates },
            // The pattern is a constant that the tests compile: failing here is a build defect.
            Err(error) => unreachable!("built-in candidate pattern does not compile: {error}"),
        }
    }

    /// Every validated match in `text`, left to right, at most `limit` of them.
    pub fn scan(&self, text: &[u8], context: Context<'_>, limit: usize) -> Vec<Hit> {
        let mut hits = Vec::new();
        let mut position = 0;
        while hits.len() < limit && position < text.len() {
            let Some(found) = self.candidates.find_at(text, position) else {
                break;
            };
            match self.classify(text, found.start(), found.end(), context) {
                Some(hit) => {
                    position = hit.end.max(found.start() + 1);
                    hits.push(hit);
                }
                // A lettered candidate that is nothing gives up only its first word, so that a
                // greedy IBAN shape cannot hide an address after it; a numeric one gives up all
                // its groups, whose tails would otherwise be read as shorter numbers.
                None if text[found.start()].is_ascii_alphabetic() => {
                    position = first_word_end(text, found.start());
                }
                None => position = found.end(),
            }
        }
        hits
    }

    fn classify(&self, text: &[u8], start: usize, end: usize, context: Context<'_>) -> Option<Hit> {
        if !standalone(text, start, end) {
            return None;
        }
        let candidate = std::str::from_utf8(&text[start..end]).ok()?;
        let near = |keywords: &[&str]| near_keyword(text, start, end, context.key, keywords);
        let hit = |kind, class, severity, normalized: String, reveal| Hit {
            kind,
            class,
            severity,
            start,
            end,
            normalized,
            reveal,
        };
        let secret =
            |kind, severity| hit(kind, DataClass::Secret, severity, candidate.to_owned(), 4);

        if candidate.starts_with("-----BEGIN") {
            return Some(secret("data.private_key", Severity::Critical));
        }
        if candidate.starts_with("eyJ") && candidate.bytes().filter(|&b| b == b'.').count() == 2 {
            return crate::jwt::decode(candidate)
                .is_ok()
                .then(|| secret("data.jwt", Severity::Medium));
        }
        let token = |prefix: &str, kind, severity| {
            (candidate.starts_with(prefix) && validate::random_enough(&candidate[prefix.len()..]))
                .then(|| secret(kind, severity))
        };
        if AWS_KEY_ID_PREFIXES.iter().any(|p| candidate.starts_with(p)) && candidate.len() == 20 {
            return token(&candidate[..4], "data.aws_access_key", Severity::Critical);
        }
        for (prefix, kind, severity) in [
            ("github_pat_", "data.github_token", Severity::Critical),
            ("gh", "data.github_token", Severity::Critical),
            ("xox", "data.slack_token", Severity::High),
            ("sk_live_", "data.stripe_key", Severity::Critical),
            ("rk_live_", "data.stripe_key", Severity::Critical),
            ("AIza", "data.google_api_key", Severity::High),
        ] {
            if candidate.starts_with(prefix)
                && candidate.get(prefix.len()..).is_some()
                && let Some(found) = token(prefix, kind, severity)
            {
                return Some(found);
            }
        }
        if let Some(value) = password_assignment(candidate) {
            return (!placeholder(value)).then(|| Hit {
                start: end - value.len(),
                ..hit(
                    "data.password",
                    DataClass::Secret,
                    Severity::High,
                    value.to_owned(),
                    0,
                )
            });
        }
        if candidate.contains('@') {
            return email(candidate).then(|| {
                hit(
                    "data.email",
                    DataClass::Pii,
                    Severity::Low,
                    candidate.to_ascii_lowercase(),
                    0,
                )
            });
        }
        if candidate.len() == 40 && aws_secret_shape(candidate) {
            let key_id_near = AWS_KEY_ID_PREFIXES
                .iter()
                .any(|prefix| window_contains(text, start, end, prefix, 128));
            return (key_id_near || near(AWS_SECRET_KEYWORDS))
                .then(|| secret("data.aws_secret_key", Severity::Critical));
        }
        if candidate.contains(':') {
            return (context.internal_ips && validate::internal_ip(candidate)).then(|| {
                hit(
                    "data.internal_ip",
                    DataClass::Business,
                    Severity::Low,
                    candidate.to_ascii_lowercase(),
                    0,
                )
            });
        }
        if candidate
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
        {
            return self.lettered(candidate, &hit);
        }
        self.numeric(candidate, context, &near, &hit)
    }

    /// Candidates that start with a letter: UK NINO, Spanish NIE, IBAN (DNIs end in one).
    fn lettered(
        &self,
        candidate: &str,
        hit: &impl Fn(&'static str, DataClass, Severity, String, usize) -> Hit,
    ) -> Option<Hit> {
        let compact = || candidate.replace([' ', '-'], "").to_ascii_uppercase();
        if validate::uk_nino(candidate) {
            return Some(hit(
                "data.uk_nino",
                DataClass::Pii,
                Severity::High,
                compact(),
                0,
            ));
        }
        if validate::spanish_id(candidate) {
            return Some(hit(
                "data.es_dni",
                DataClass::Pii,
                Severity::High,
                compact(),
                0,
            ));
        }
        validate::iban(candidate)
            .map(|iban| hit("data.iban", DataClass::Financial, Severity::High, iban, 2))
    }

    fn numeric(
        &self,
        candidate: &str,
        context: Context<'_>,
        near: &impl Fn(&[&str]) -> bool,
        hit: &impl Fn(&'static str, DataClass, Severity, String, usize) -> Hit,
    ) -> Option<Hit> {
        let digits = validate::digits(candidate);
        let normalized = || {
            digits
                .iter()
                .map(|d| char::from(b'0' + d))
                .collect::<String>()
        };
        let grouped_by = |separators: &[char]| candidate.contains(separators);
        if candidate.ends_with(|c: char| c.is_ascii_alphabetic()) {
            return validate::spanish_id(candidate)
                .then(|| {
                    hit(
                        "data.es_dni",
                        DataClass::Pii,
                        Severity::High,
                        candidate.replace('-', "").to_ascii_uppercase(),
                        0,
                    )
                })
                .or_else(|| {
                    validate::french_nir(candidate).then(|| {
                        hit(
                            "data.fr_nir",
                            DataClass::Pii,
                            Severity::High,
                            candidate.replace(' ', "").to_ascii_uppercase(),
                            0,
                        )
                    })
                });
        }
        if candidate.split('.').count() == 4 && !grouped_by(&[' ', '-', '/', '(']) {
            return (context.internal_ips && validate::internal_ip(candidate)).then(|| {
                hit(
                    "data.internal_ip",
                    DataClass::Business,
                    Severity::Low,
                    candidate.to_owned(),
                    0,
                )
            });
        }
        if validate::date(candidate) {
            return near(DOB_KEYWORDS).then(|| {
                hit(
                    "data.date_of_birth",
                    DataClass::Pii,
                    Severity::Medium,
                    candidate.to_owned(),
                    0,
                )
            });
        }
        let card_grouping = !grouped_by(&['.', '/', '(', '+']);
        if card_grouping && validate::payment_card(&digits) {
            return Some(hit(
                "data.payment_card",
                DataClass::Financial,
                Severity::High,
                normalized(),
                4,
            ));
        }
        if digits.len() == 15 && validate::french_nir(candidate) {
            return Some(hit(
                "data.fr_nir",
                DataClass::Pii,
                Severity::High,
                normalized(),
                0,
            ));
        }
        if digits.len() == 9 {
            let ssn_written = candidate.len() == 11
                && (candidate.as_bytes()[3], candidate.as_bytes()[6]) != (b' ', b'-');
            if ((ssn_written && !grouped_by(&['.', '/']))
                || (!grouped_by(&['-', ' ']) && near(SSN_KEYWORDS)))
                && validate::us_ssn(&digits)
            {
                return Some(hit(
                    "data.us_ssn",
                    DataClass::Pii,
                    Severity::High,
                    normalized(),
                    0,
                ));
            }
            if near(BSN_KEYWORDS) && validate::dutch_bsn(&digits) {
                return Some(hit(
                    "data.nl_bsn",
                    DataClass::Pii,
                    Severity::High,
                    normalized(),
                    0,
                ));
            }
        }
        validate::phone(candidate, near(PHONE_KEYWORDS))
            .then(|| hit("data.phone", DataClass::Pii, Severity::Low, normalized(), 0))
    }
}

impl Default for Builtin {
    fn default() -> Self {
        Self::new()
    }
}

/// The kind a value gets from its field name alone (`password`, `client_secret`): such
/// values are secrets whatever their shape.
pub fn by_field_name(name: &str, value: &str) -> Option<(&'static str, DataClass, Severity)> {
    let mut name = name;
    while let Some(rest) = name
        .get(..2)
        .filter(|prefix| prefix.eq_ignore_ascii_case("x-"))
        .map(|_| &name[2..])
    {
        name = rest;
    }
    let listed = |fields: &[&str]| fields.iter().any(|field| field.eq_ignore_ascii_case(name));
    let found = if listed(PASSWORD_FIELDS) {
        ("data.password", DataClass::Secret, Severity::High)
    } else if listed(SECRET_FIELDS) {
        ("data.secret", DataClass::Secret, Severity::High)
    } else {
        return None;
    };
    (!placeholder(value)).then_some(found)
}

/// Values that stand for a secret without being one: empty, already masked, or a template.
pub fn placeholder(value: &str) -> bool {
    let value = value.trim();
    value.is_empty()
        || value.eq_ignore_ascii_case("null")
        || value == intelligence::exchange::REDACTED
        || value
            .chars()
            .all(|c| matches!(c, '*' | 'x' | 'X' | '•' | '#' | '.' | '-'))
        || (value.starts_with("{{") && value.ends_with("}}"))
        || (value.starts_with("${") && value.ends_with('}'))
}

/// The value of `password=...` / `"pwd": "..."` written in text.
fn password_assignment(candidate: &str) -> Option<&str> {
    let lower = candidate.get(..4)?.to_ascii_lowercase();
    if !(lower.starts_with("pass") || lower.starts_with("pwd")) {
        return None;
    }
    let separator = candidate.find([':', '='])?;
    let value = candidate[separator + 1..].trim_start_matches([' ', '\t', '"', '\'']);
    (!value.is_empty()).then_some(value)
}

fn email(candidate: &str) -> bool {
    let Some((local, domain)) = candidate.split_once('@') else {
        return false;
    };
    let tld = domain.rsplit('.').next().unwrap_or_default();
    !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && !domain.contains('@')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
        && tld.len() >= 2
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
}

/// AWS secret access keys are 40 characters of base64 with both cases and a digit; hex digests
/// of the same length have one case only.
fn aws_secret_shape(candidate: &str) -> bool {
    let bytes = candidate.as_bytes();
    bytes.iter().any(u8::is_ascii_uppercase)
        && bytes.iter().any(u8::is_ascii_lowercase)
        && bytes.iter().any(u8::is_ascii_digit)
}

fn is_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Whether the candidate stands on its own rather than being part of a longer identifier: a
/// digit run inside `order_4111111111111111`, the last group of a UUID, or the middle of a
/// version string is not a value of its own.
fn standalone(text: &[u8], start: usize, end: usize) -> bool {
    let before = start.checked_sub(1).map(|i| text[i]);
    let before2 = start.checked_sub(2).map(|i| text[i]);
    let after = text.get(end).copied();
    let after2 = text.get(end + 1).copied();
    let joined_before = before.is_some_and(is_word)
        || (matches!(before, Some(b'-' | b'.'))
            && before2.is_some_and(|b| b.is_ascii_alphanumeric()));
    let joined_after = after.is_some_and(is_word)
        || (matches!(after, Some(b'-' | b'.' | b'@'))
            && after2.is_some_and(|b| b.is_ascii_alphanumeric()));
    !joined_before && !joined_after
}

fn first_word_end(text: &[u8], start: usize) -> usize {
    let word = text[start..].iter().take_while(|&&b| is_word(b)).count();
    start + word.max(1)
}

fn near_keyword(
    text: &[u8],
    start: usize,
    end: usize,
    key: Option<&str>,
    keywords: &[&str],
) -> bool {
    let key_says = key.is_some_and(|key| {
        let key = key.to_ascii_lowercase();
        keywords.iter().any(|keyword| key.contains(keyword))
    });
    key_says
        || keywords
            .iter()
            .any(|keyword| window_contains(text, start, end, keyword, KEYWORD_WINDOW))
}

/// Whether `needle` occurs (ASCII case-insensitively) within `window` bytes before or after
/// `text[start..end]`.
pub fn window_contains(text: &[u8], start: usize, end: usize, needle: &str, window: usize) -> bool {
    let needle = needle.as_bytes();
    let contains = |slice: &[u8]| {
        slice
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    let before = &text[start.saturating_sub(window + needle.len())..start];
    let after = &text[end..(end + window + needle.len()).min(text.len())];
    !needle.is_empty() && (contains(before) || contains(after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str, context: Context<'_>) -> Vec<&'static str> {
        Builtin::new()
            .scan(text.as_bytes(), context, 100)
            .into_iter()
            .map(|hit| hit.kind)
            .collect()
    }

    fn plain(text: &str) -> Vec<&'static str> {
        kinds(text, Context::default())
    }

    #[test]
    fn finds_each_kind_in_text() {
        let table = [
            ("card 4111 1111 1111 1111 on file", "data.payment_card"),
            ("amex 378282246310005.", "data.payment_card"),
            ("pay to DE89 3704 0044 0532 0130 00 today", "data.iban"),
            ("ssn: 536-22-1234", "data.us_ssn"),
            ("nino AB123456C", "data.uk_nino"),
            ("dni 12345678Z", "data.es_dni"),
            ("nie X1234567L", "data.es_dni"),
            ("nir 1 84 12 76 451 089 46", "data.fr_nir"),
            ("bsn 111222333", "data.nl_bsn"),
            ("write to jane.doe+news@example.co.uk", "data.email"),
            ("call +44 20 7946 0958", "data.phone"),
            ("call (415) 555-0132", "data.phone"),
            ("date of birth: 1984-02-29", "data.date_of_birth"),
            ("geboren am 29.02.1984", "data.date_of_birth"),
            ("AKIAIOSFODNN7EXAMPLE", "data.aws_access_key"),
            (
                "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
                "data.github_token",
            ),
            (
                "github_pat_11ABCDEFG0123456789abcd_efghijklmnopqrstuvwxyz",
                "data.github_token",
            ),
            ("xoxb-1234567890-abcdefghij", "data.slack_token"),
            ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "data.stripe_key"),
            (
                "AIzaSyD-1234567890abcdefghijklmnopqrstu",
                "data.google_api_key",
            ),
            ("-----BEGIN RSA PRIVATE KEY-----\nMIIE", "data.private_key"),
            ("-----BEGIN OPENSSH PRIVATE KEY-----", "data.private_key"),
            ("user=bob&password=hunter2&x=1", "data.password"),
            ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "data.jwt"),
        ];
        for (text, kind) in table {
            assert_eq!(plain(text), [kind], "in {text:?}");
        }
    }

    #[test]
    fn aws_secret_needs_its_key_id_or_a_keyword() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            plain(&format!("AKIAIOSFODNN7EXAMPLE {secret}")),
            ["data.aws_access_key", "data.aws_secret_key"]
        );
        assert_eq!(
            plain(&format!("aws_secret_access_key = {secret}")),
            ["data.aws_secret_key"]
        );
        assert!(plain(&format!("commit {secret}")).is_empty());
        assert!(plain("sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709").is_empty());
    }

    #[test]
    fn near_misses_are_not_findings() {
        for text in [
            "card 4111 1111 1111 1112",
            "order 1234567812345670",
            "order_4111111111111111",
            "id 123e4567-e89b-12d3-a456-426614174000",
            "at 1700000000000 ms",
            "ts 2024-01-02T10:00:00Z",
            "version 10.0.19041.1 build 1.2.3",
            "ssn 000-12-3456 666-12-3456 912-34-5678",
            "iban DE88 3704 0044 0532 0130 00",
            "dni 12345678A",
            "nino GB123456A",
            "due 1984-02-29",
            "host 10.0.0.1",
            "ghp_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
            "password=******** password=${PASSWORD}",
            "bob@localhost",
            "number 111222333",
            "eyJub3QiOiJqc29uIn0x.eyJhIjoxfQ.x",
        ] {
            assert!(plain(text).is_empty(), "{text:?} gave {:?}", plain(text));
        }
    }

    #[test]
    fn context_gates_keywords_and_internal_addresses() {
        let dob = Context {
            key: Some("customer_birthdate"),
            ..Context::default()
        };
        assert_eq!(kinds("1990-01-02", dob), ["data.date_of_birth"]);
        let phone = Context {
            key: Some("mobile"),
            ..Context::default()
        };
        assert_eq!(kinds("4155550132", phone), ["data.phone"]);
        let response = Context {
            internal_ips: true,
            ..Context::default()
        };
        assert_eq!(
            kinds("upstream 10.0.0.1 and fd00::1 and 8.8.8.8", response),
            ["data.internal_ip", "data.internal_ip"]
        );
    }

    #[test]
    fn a_failed_candidate_does_not_hide_the_next() {
        assert_eq!(
            plain("XX12 3456 7890 1234 5 then bob@example.com"),
            ["data.email"]
        );
        assert_eq!(
            plain("4111111111111111,5555555555554444"),
            ["data.payment_card", "data.payment_card"]
        );
    }

    #[test]
    fn field_names_make_secrets() {
        assert_eq!(
            by_field_name("Password", "x1").map(|k| k.0),
            Some("data.password")
        );
        assert_eq!(
            by_field_name("client_secret", "abc").map(|k| k.0),
            Some("data.secret")
        );
        assert_eq!(by_field_name("password", "****"), None);
        assert_eq!(by_field_name("username", "bob"), None);
    }
}
