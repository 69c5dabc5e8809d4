//! Normalisation of one value into the forms an attacker may have hidden a payload behind.
//!
//! Attackers encode so that a filter matching the raw bytes misses what the application will
//! finally see; each layer an application may peel (URL decoding, twice; HTML entities; `\u`
//! escapes in JSON or JavaScript; base64) is peeled here too, and the detectors look at every
//! layer. Every function is bounded: no output is longer than three times its input (a
//! replacement character for each invalid byte), and no value is read past [`MAX_VALUE_BYTES`].

use std::borrow::Cow;

/// Longer values are judged on their first bytes: payloads sit near the start and the cost of a
/// call must not grow with what a client chooses to send.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Decoding rounds: enough for double and triple encoding, few enough to bound the work.
const MAX_ROUNDS: usize = 3;
/// Base64 shorter than this is as likely an identifier as a payload.
const MIN_BASE64: usize = 16;

/// The distinct forms of `value` to match, lower-cased (matching is case-insensitive): the
/// value itself, each decoding layer that changed it, a base64 payload's text and the SQL form
/// with comments folded. At most `2 * MAX_ROUNDS + 3` variants, each at most three times the
/// (capped) input's length.
pub fn variants(value: &str) -> Vec<Cow<'_, str>> {
    // Most values hold nothing to decode: they are read as they are, not copied per layer.
    let mut layers: Vec<Cow<'_, str>> = vec![Cow::Borrowed(truncate(value))];
    for _ in 0..MAX_ROUNDS {
        let current = &layers[layers.len() - 1];
        if !may_decode(current) {
            break;
        }
        let next = decode_once(current);
        if next == *current {
            break;
        }
        layers.push(Cow::Owned(next));
    }
    let base64: Vec<String> = layers
        .iter()
        .filter_map(|layer| base64_payload(layer))
        .collect();
    for text in base64 {
        let decoded = decode_once(&text);
        layers.push(Cow::Owned(text));
        layers.push(Cow::Owned(decoded));
    }
    if let Some(folded) = layers
        .iter()
        .rev()
        .find(|layer| layer.as_bytes().contains(&b'*') && layer.contains("/*"))
    {
        let folded = sql_fold(folded);
        layers.push(Cow::Owned(folded));
    }
    // Lower-cased and rid of repeats in place, first occurrences kept in order.
    let mut kept = 0;
    for at in 0..layers.len() {
        let lower = lowercase(std::mem::take(&mut layers[at]));
        if !layers[..kept].contains(&lower) {
            layers[kept] = lower;
            kept += 1;
        }
    }
    layers.truncate(kept);
    layers
}

/// `text` lower-cased, copied only when a letter changes (most values are lower-case ASCII
/// already). Text beyond ASCII takes Unicode's full mapping, as `str::to_lowercase` does.
fn lowercase(text: Cow<'_, str>) -> Cow<'_, str> {
    if !text.is_ascii() {
        return Cow::Owned(text.to_lowercase());
    }
    if !text.bytes().any(|b| b.is_ascii_uppercase()) {
        return text;
    }
    let mut owned = text.into_owned();
    owned.make_ascii_lowercase();
    Cow::Owned(owned)
}

/// Whether [`decode_once`] could change `value`: it holds what one of its decoders reads (a
/// percent sign or plus, an ampersand, a backslash, a fullwidth form). Overlong UTF-8 is only
/// ever the output of percent-decoding: valid text cannot hold it.
fn may_decode(value: &str) -> bool {
    value
        .bytes()
        .any(|b| matches!(b, b'%' | b'+' | b'&' | b'\\'))
        || (!value.is_ascii() && value.chars().any(is_fullwidth))
}

/// `value` cut to at most [`MAX_VALUE_BYTES`], on a character boundary.
pub fn truncate(value: &str) -> &str {
    if value.len() <= MAX_VALUE_BYTES {
        return value;
    }
    let mut end = MAX_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// One layer of everything a server or browser may decode: percent-encoding (with `+` as a
/// space and IIS's `%uXXXX`), then HTML entities, then backslash escapes, then fullwidth forms.
pub fn decode_once(value: &str) -> String {
    fold_fullwidth(backslash_escapes(&html_entities(&percent_decode(
        value, true,
    ))))
}

/// Fullwidth forms (`＜script＞`) as the ASCII they stand for: Windows' best-fit mapping turns
/// them into it when a Unicode value meets an ANSI API.
pub fn fold_fullwidth(value: String) -> String {
    if !value.chars().any(is_fullwidth) {
        return value;
    }
    value
        .chars()
        .map(|c| {
            if is_fullwidth(c) {
                char::from_u32(u32::from(c) - 0xff01 + 0x21).unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

fn is_fullwidth(c: char) -> bool {
    ('\u{ff01}'..='\u{ff5e}').contains(&c)
}

/// Percent-decoding. Overlong UTF-8 forms of ASCII (`%c0%ae` for `.`), which some servers
/// accept, become that ASCII; other invalid bytes become replacement characters.
pub fn percent_decode(value: &str, plus_as_space: bool) -> String {
    let bytes = value.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                if let Some(byte) = hex_pair(bytes.get(i + 1..i + 3)) {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                if matches!(bytes.get(i + 1), Some(b'u' | b'U'))
                    && let Some(c) = hex_char(bytes.get(i + 2..i + 6))
                {
                    let mut buffer = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
                    i += 6;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_as_space => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    fold_overlong(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Rewrites overlong encodings of ASCII in place as their ASCII: two bytes (`C0 AE`, `C1 9C`),
/// three (`E0 80 AE`) and four (`F0 80 80 AE`).
fn fold_overlong(bytes: &mut Vec<u8>) {
    let continuation = |b: Option<&u8>| b.is_some_and(|b| b & 0xc0 == 0x80);
    let mut read = 0;
    let mut write = 0;
    while read < bytes.len() {
        let byte = bytes[read];
        // The bytes before the last carry no bits (or one, for `C1` and `80`/`81` leads).
        let length = match byte {
            0xc0 | 0xc1 => 2,
            0xe0 if matches!(bytes.get(read + 1), Some(0x80 | 0x81)) => 3,
            0xf0 if bytes.get(read + 1) == Some(&0x80)
                && matches!(bytes.get(read + 2), Some(0x80 | 0x81)) =>
            {
                4
            }
            _ => 0,
        };
        if length > 0 && (1..length).all(|offset| continuation(bytes.get(read + offset))) {
            let high = bytes[read + length - 2] & 0x01;
            bytes[write] = (high << 6) | (bytes[read + length - 1] & 0x3f);
            read += length;
        } else {
            bytes[write] = byte;
            read += 1;
        }
        write += 1;
    }
    bytes.truncate(write);
}

fn hex_pair(digits: Option<&[u8]>) -> Option<u8> {
    let digits = digits?;
    let text = std::str::from_utf8(digits).ok()?;
    (digits.len() == 2 && digits.iter().all(u8::is_ascii_hexdigit))
        .then(|| u8::from_str_radix(text, 16).ok())
        .flatten()
}

fn hex_char(digits: Option<&[u8]>) -> Option<char> {
    let digits = digits?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let code = u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
    char::from_u32(code)
}

/// Named entities that matter for markup and scripts; the rest of HTML's two thousand names
/// spell letters no payload needs.
const NAMED_ENTITIES: &[(&str, char)] = &[
    ("lt", '<'),
    ("gt", '>'),
    ("amp", '&'),
    ("quot", '"'),
    ("apos", '\''),
    ("sol", '/'),
    ("bsol", '\\'),
    ("colon", ':'),
    ("semi", ';'),
    ("lpar", '('),
    ("rpar", ')'),
    ("equals", '='),
    ("period", '.'),
    ("comma", ','),
    ("tab", '\t'),
    ("newline", '\n'),
    ("nbsp", ' '),
    ("grave", '`'),
    ("dollar", '$'),
    ("num", '#'),
    ("excl", '!'),
    ("lbrace", '{'),
    ("rbrace", '}'),
    ("lsqb", '['),
    ("rsqb", ']'),
    ("vert", '|'),
    ("percnt", '%'),
    ("plus", '+'),
    ("ast", '*'),
];

/// HTML character references: named (from [`NAMED_ENTITIES`]), decimal and hex, with or
/// without the closing `;` (browsers accept both).
pub fn html_entities(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match entity(rest) {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character `text` (starting at `&`) references and how many bytes the reference takes.
fn entity(text: &str) -> Option<(char, usize)> {
    let body = &text[1..];
    let (c, used) = if let Some(number) = body.strip_prefix('#') {
        let (radix, digits_from) = match number.as_bytes().first() {
            Some(b'x' | b'X') => (16, 1),
            _ => (10, 0),
        };
        // Leading zeros are padding browsers skip, however many.
        let padded: &str = &number[digits_from..];
        let digits = padded.trim_start_matches('0');
        let zeros = padded.len() - digits.len();
        let count = digits
            .bytes()
            .take_while(|b| (radix == 16 && b.is_ascii_hexdigit()) || b.is_ascii_digit())
            .count()
            .min(8);
        let code = if count == 0 {
            if zeros == 0 {
                return None;
            }
            0
        } else {
            u32::from_str_radix(&digits[..count], radix).ok()?
        };
        (char::from_u32(code)?, 2 + digits_from + zeros + count)
    } else {
        let name_len = body.bytes().take_while(u8::is_ascii_alphabetic).count();
        let name = &body[..name_len];
        let (_, c) = NAMED_ENTITIES
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))?;
        (*c, 1 + name_len)
    };
    let used = if text[used..].starts_with(';') {
        used + 1
    } else {
        used
    };
    Some((c, used))
}

/// Backslash escapes as JSON, JavaScript and C-like languages read them: `\uXXXX`, `\xXX`,
/// `\n`, `\t`, `\r`, `\/`, `\"`, `\'` and `\\`. Unknown escapes are kept, backslash and all.
pub fn backslash_escapes(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        // Escapes are ASCII: what follows them starts on a character boundary.
        let used = match escape(&rest.as_bytes()[at + 1..]) {
            Some((c, used)) => {
                out.push(c);
                used
            }
            None => {
                out.push('\\');
                0
            }
        };
        rest = &rest[at + 1 + used..];
    }
    out.push_str(rest);
    out
}

/// The character an escape stands for, given the bytes after its backslash, and how many of
/// them it takes.
fn escape(after: &[u8]) -> Option<(char, usize)> {
    match after.first() {
        // `\u{1F600}`, as ES2015 writes any code point.
        Some(b'u') if after.get(1) == Some(&b'{') => {
            let digits = after[2..]
                .iter()
                .take(7)
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            (after.get(2 + digits) == Some(&b'}'))
                .then(|| hex_char(after.get(2..2 + digits)))
                .flatten()
                .map(|c| (c, digits + 3))
        }
        Some(b'u') => hex_char(after.get(1..5)).map(|c| (c, 5)),
        Some(b'x') => hex_pair(after.get(1..3)).map(|b| (char::from(b), 3)),
        Some(b'n') => Some(('\n', 1)),
        Some(b't') => Some(('\t', 1)),
        Some(b'r') => Some(('\r', 1)),
        Some(&b @ (b'/' | b'"' | b'\'' | b'\\')) => Some((char::from(b), 1)),
        _ => None,
    }
}

/// The text of the first base64 run in `value` that is obviously a payload: long enough, in
/// the base64 alphabet, and decoding to mostly printable text (an encoded image or key decodes
/// to binary and is left alone).
pub fn base64_payload(value: &str) -> Option<String> {
    base64_runs(value).find_map(|run| {
        // Judged as it decodes, copied only once it passes: most runs are ids and hashes, and
        // a run is given up at the first binary byte past the tenth allowed.
        let length = run.len() * 6 / 8;
        let (mut binary, mut punctuation) = (0usize, 0usize);
        base64_decode_each(run, |byte| {
            binary += usize::from(!(byte.is_ascii_graphic() || byte.is_ascii_whitespace()));
            punctuation += usize::from(byte.is_ascii_punctuation());
            binary * 10 <= length
        })?;
        // Letters alone also decode from a base64-looking word (a long identifier);
        // payloads carry punctuation.
        (punctuation > 0)
            .then(|| base64_decode(run))
            .flatten()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    })
}

/// The runs of `value` in the base64 alphabet (standard or URL-safe) at least [`MIN_BASE64`]
/// long, read byte by byte (the alphabet is ASCII, so any other byte ends a run).
fn base64_runs(value: &str) -> impl Iterator<Item = &str> {
    let bytes = value.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < bytes.len() {
            let start = at;
            while at < bytes.len()
                && (bytes[at].is_ascii_alphanumeric()
                    || matches!(bytes[at], b'+' | b'/' | b'-' | b'_'))
            {
                at += 1;
            }
            let end = at;
            at += 1;
            if end - start >= MIN_BASE64 {
                return Some(&value[start..end]);
            }
        }
        None
    })
}

/// Standard or URL-safe base64, padded or not; None on anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    base64_decode_each(text, |byte| {
        out.push(byte);
        true
    })?;
    Some(out)
}

/// Decodes `text` as [`base64_decode`] does, handing each byte to `sink` for as long as it
/// returns true; None (after some bytes, maybe) on anything but base64 or once `sink` stops.
fn base64_decode_each(text: &str, mut sink: impl FnMut(u8) -> bool) -> Option<()> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if !sink((buffer >> bits) as u8) {
                return None;
            }
            buffer &= (1 << bits) - 1;
        }
    }
    Some(())
}

/// SQL with comments folded the way MySQL reads them: `/* ... */` is a space and the body of a
/// version comment (`/*!50000 select*/`) is code; runs of whitespace become one space.
pub fn sql_fold(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(open) = rest.find("/*") {
        out.push_str(&rest[..open]);
        let inner = &rest[open + 2..];
        let (body, after) = match inner.find("*/") {
            Some(close) => (&inner[..close], &inner[close + 2..]),
            None => (inner, ""),
        };
        out.push(' ');
        if let Some(code) = body.strip_prefix('!') {
            out.push_str(code.trim_start_matches(|c: char| c.is_ascii_digit()));
            out.push(' ');
        }
        rest = after;
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn layers_are_peeled_one_by_one() {
        let v = variants("%253Cscript%253E");
        assert_eq!(v, ["%253cscript%253e", "%3cscript%3e", "<script>"]);
        assert!(variants("a+b%20c").iter().any(|v| v == "a b c"));
    }

    #[test]
    fn each_decoder_handles_its_forms() {
        assert_eq!(percent_decode("%u003cb%3E", false), "<b>");
        assert_eq!(
            fold_fullwidth("\u{ff1c}script\u{ff1e} ok".to_owned()),
            "<script> ok"
        );
        assert_eq!(percent_decode("%c0%ae%c0%ae/", false), "../");
        assert_eq!(percent_decode("%e0%80%ae%f0%80%80%ae/", false), "../");
        assert_eq!(percent_decode("%e0%a4%85", false), "\u{905}");
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(html_entities("&lt;img&#32;src&#x3D;x&gt"), "<img src=x>");
        assert_eq!(html_entities("AT&T &unknown; &#"), "AT&T &unknown; &#");
        assert_eq!(html_entities("&#0000000000000000000036;&#x0007b;"), "${");
        assert_eq!(
            backslash_escapes(r#"\u003cscript\x3e \"q\" \d"#),
            "<script> \"q\" \\d"
        );
        assert_eq!(
            backslash_escapes(r"\u{61}lert \u{}x \u{110000}"),
            r"alert \u{}x \u{110000}"
        );
        assert_eq!(
            sql_fold("UNION/**/SELECT/*!50000 user*/()"),
            "UNION SELECT user ()"
        );
    }

    #[test]
    fn base64_only_when_obviously_a_payload() {
        // "<script>alert(1)</script>"
        let encoded = "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==";
        assert_eq!(
            base64_payload(encoded).as_deref(),
            Some("<script>alert(1)</script>")
        );
        assert!(
            variants(&format!("token={encoded}"))
                .iter()
                .any(|v| v.contains("<script>"))
        );
        // A long identifier is valid base64 but decodes to binary.
        assert_eq!(base64_payload("customerAccountIdentifier"), None);
        assert_eq!(base64_payload("short"), None);
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_VALUE_BYTES);
        assert!(truncate(&long).len() <= MAX_VALUE_BYTES);
        assert!(variants(&long).iter().all(|v| v.len() <= MAX_VALUE_BYTES));
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let value = String::from_utf8_lossy(&bytes);
            let out = variants(&value);
            prop_assert!(out.len() <= 2 * MAX_ROUNDS + 3);
            for variant in &out {
                prop_assert!(variant.len() <= 3 * value.len().max(1));
            }
        }

        #[test]
        fn base64_runs_are_the_alphabet_runs(text in "[a-zA-Z0-9+/_=é -]{0,80}") {
            let expected: Vec<&str> = text
                .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '-' | '_')))
                .filter(|run| run.len() >= MIN_BASE64)
                .collect();
            prop_assert_eq!(base64_runs(&text).collect::<Vec<_>>(), expected);
        }

        #[test]
        fn base64_judged_as_decoded_agrees_with_judging_the_whole(
            bytes in proptest::collection::vec(prop_oneof![4 => 0x20u8..0x7f, 1 => any::<u8>()], 12..64)
        ) {
            use base64::Engine as _;
            let run = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes);
            let printable = bytes
                .iter()
                .filter(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
                .count();
            let payload = printable * 10 >= bytes.len() * 9
                && bytes.iter().any(u8::is_ascii_punctuation);
            let expected = payload.then(|| String::from_utf8_lossy(&bytes).into_owned());
            prop_assert_eq!(base64_payload(&run), expected);
        }

        #[test]
        fn encoded_text_is_recovered(text in "[ -~]{0,64}") {
            let encoded: String = text.bytes().map(|b| format!("%{b:02x}")).collect();
            let once = backslash_escapes(&html_entities(&text)).to_lowercase();
            prop_assert!(variants(&encoded).iter().any(|v| *v == once));
        }
    }
}
