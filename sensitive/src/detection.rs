//! What a detector reports: a kind, a class, a severity, where in the call, and evidence that
//! correlates values across calls without carrying them.

use std::borrow::Cow;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use intelligence::Severity;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What kind of harm a leaked value does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    Pii,
    Secret,
    Financial,
    Health,
    Business,
}

impl DataClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pii => "pii",
            Self::Secret => "secret",
            Self::Financial => "financial",
            Self::Health => "health",
            Self::Business => "business",
        }
    }
}

/// Which message of the call a value was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Request,
    Response,
}

/// Where in a message a value was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "in", rename_all = "snake_case")]
pub enum Location {
    /// A header field, by its name as sent.
    Header { name: String },
    /// The request target's path (credentials written into a URL).
    Path,
    /// A query parameter, by its percent-decoded name.
    Query { param: String },
    /// A value in a JSON body, by JSON pointer (RFC 6901): `/customer/card/number`.
    Json { pointer: String },
    /// A field of an `application/x-www-form-urlencoded` body.
    Form { field: String },
    /// A byte offset into a body that is neither JSON nor a form.
    Text { offset: usize },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header { name } => write!(f, "header {name}"),
            Self::Path => write!(f, "path"),
            Self::Query { param } => write!(f, "query {param}"),
            Self::Json { pointer } => write!(f, "json {pointer}"),
            Self::Form { field } => write!(f, "form {field}"),
            Self::Text { offset } => write!(f, "body offset {offset}"),
        }
    }
}

/// The agent-local key that makes evidence hashes correlatable inside one deployment and
/// useless as a dictionary outside it (a plain hash of a card number is reversible by
/// enumeration). The caller owns and supplies it; Debug never shows it.
#[derive(Clone)]
pub struct HashKey([u8; 32]);

impl HashKey {
    pub fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// HMAC-SHA256 of `value`, truncated to 64 bits, in hex: enough to tell values apart in
    /// one deployment's findings, too short to be a stable identifier elsewhere.
    pub fn digest(&self, value: &str) -> String {
        self.mac(value)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A key for another `purpose` (the behavioural detectors' hashes, say), derived so that
    /// neither key tells anything of the other.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        self.mac(purpose)
    }

    fn mac(&self, value: &str) -> [u8; 32] {
        // HMAC zero-pads keys shorter than the hash's block, so the padded key is the same key.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let mut mac = Hmac::<Sha256>::new(&block.into());
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// Masked evidence: never the value, only what lets a human correlate and triage it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Evidence {
    pub class: DataClass,
    /// Keyed hash of the normalized value (digits only for numbers, so `4111 1111...` and
    /// `4111-1111-...` correlate).
    pub hash: String,
    /// At most four leading characters, only where they say what the value is rather than who
    /// it belongs to: a card's issuer digits, an IBAN's country, a token's provider prefix.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub shown: String,
    /// Length of the value in characters.
    pub length: usize,
}

impl Evidence {
    pub const MAX_SHOWN: usize = 4;

    /// Evidence for `value` of `class`, showing `reveal` leading characters of `value` (capped
    /// at [`Self::MAX_SHOWN`] and at a third of the value, so that a short value is never mostly
    /// shown), hashing `normalized`.
    pub fn new(
        key: &HashKey,
        class: DataClass,
        value: &str,
        normalized: &str,
        reveal: usize,
    ) -> Self {
        let length = value.chars().count();
        let reveal = reveal.min(Self::MAX_SHOWN).min(length / 3);
        Self {
            class,
            hash: key.digest(normalized),
            shown: value
                .chars()
                .take(reveal)
                .filter(|c| !c.is_control())
                .collect(),
            length,
        }
    }
}

impl fmt::Display for Evidence {
    /// Shaped like `intelligence::finding::mask`'s output, plus the class and hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?}… ({} chars) #{}",
            self.class.as_str(),
            self.shown,
            self.length,
            self.hash
        )
    }
}

/// One sensitive value (or token problem) found in one place of one call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Detection {
    /// `data.payment_card`, `auth.jwt_alg_none`, or a configured detector's name.
    pub kind: Cow<'static, str>,
    pub severity: Severity,
    pub direction: Direction,
    pub location: Location,
    pub evidence: Evidence,
    /// What a human needs beyond the kind: the claim that carried PII, the scopes that were too
    /// broad. Never a value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_shows_little_and_hashes_with_the_key() {
        let key = HashKey::new([7; 32]);
        let other = HashKey::new([8; 32]);
        let card = Evidence::new(
            &key,
            DataClass::Financial,
            "4111 1111 1111 1111",
            "4111111111111111",
            4,
        );
        assert_eq!(card.shown, "4111");
        assert_eq!(card.length, 19);
        assert_eq!(card.hash.len(), 16);
        assert_eq!(card.hash, key.digest("4111111111111111"));
        assert_ne!(card.hash, other.digest("4111111111111111"));
        let short = Evidence::new(&key, DataClass::Secret, "hunter2", "hunter2", 4);
        assert_eq!(short.shown, "hu", "a third of a short value at most");
        assert_eq!(format!("{key:?}"), "HashKey(..)");
        assert!(
            card.to_string()
                .starts_with("financial \"4111\"… (19 chars) #")
        );
    }
}
