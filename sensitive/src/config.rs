//! What a team teaches Moat about its own data: custom detectors and the fields its specs
//! declare masked. Deserialized strictly and validated into compiled form before use.

use intelligence::Severity;
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::Deserialize;

use crate::detection::DataClass;
use crate::masking::MaskedField;
use crate::validate;

/// Compiled size a configured pattern may reach: bounds both memory and match time.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Largest keyword proximity window, in bytes either side.
pub const MAX_WINDOW: usize = 1024;
const DEFAULT_WINDOW: usize = 64;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    #[serde(default)]
    pub detectors: Vec<DetectorConfig>,
    #[serde(default)]
    pub masked_fields: Vec<MaskedField>,
}

/// One custom detector. A value matches when the `regex` matches in it (and, with `keywords`,
/// one of them is within `window` bytes of the match or in the field's name), or when it sits
/// in one of `fields` (and, with a `regex`, matches it); either way the `validator` must pass.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Lower-case letters, digits and `_`; the finding kind is `data.<name>`.
    pub name: String,
    pub class: DataClass,
    pub severity: Severity,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default = "default_window")]
    pub window: usize,
    /// JSON field, query parameter, form field or header names (case-insensitive).
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub validator: Validator,
}

fn default_window() -> usize {
    DEFAULT_WINDOW
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    #[default]
    None,
    /// Luhn over the digits of the match (cards, IMEIs, many account numbers).
    Luhn,
    /// ISO 7064 mod-97-10 over the alphanumerics of the match.
    Mod97,
}

impl Validator {
    pub fn accepts(self, text: &str) -> bool {
        match self {
            Self::None => true,
            Self::Luhn => validate::luhn(&validate::digits(text)),
            Self::Mod97 => validate::mod97_valid(text),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("detectors[{index}]: name {name:?} must be 1-64 of a-z, 0-9 and _")]
    BadName { index: usize, name: String },
    #[error("detectors[{index}] ({name}): the name is used by an earlier detector")]
    DuplicateName { index: usize, name: String },
    #[error("detectors[{index}] ({name}): needs a regex, fields, or both")]
    NothingToMatch { index: usize, name: String },
    #[error("detectors[{index}] ({name}): keywords narrow a regex's matches; add a regex")]
    KeywordsWithoutRegex { index: usize, name: String },
    #[error("detectors[{index}] ({name}): window {window} is more than {MAX_WINDOW} bytes")]
    WindowTooLarge {
        index: usize,
        name: String,
        window: usize,
    },
    #[error("detectors[{index}] ({name}): {what} is empty")]
    Empty {
        index: usize,
        name: String,
        what: &'static str,
    },
    #[error("detectors[{index}] ({name}): regex does not compile: {message}")]
    BadRegex {
        index: usize,
        name: String,
        message: String,
    },
    #[error("maskedFields[{index}]: field {field:?} is neither a JSON pointer nor a field name")]
    BadMaskedField { index: usize, field: String },
}

/// A validated custom detector.
#[derive(Debug, Clone)]
pub struct Detector {
    pub kind: String,
    pub class: DataClass,
    pub severity: Severity,
    pub regex: Option<Regex>,
    pub keywords: Vec<String>,
    pub window: usize,
    pub fields: Vec<String>,
    pub validator: Validator,
}

/// The custom detectors with one set of their patterns, so that a value is scanned once for
/// all of them and only matching patterns run again to find positions.
#[derive(Debug, Clone)]
pub struct Custom {
    pub detectors: Vec<Detector>,
    pub prefilter: RegexSet,
    /// For each pattern in `prefilter`, the index of its detector.
    pub pattern_owner: Vec<usize>,
}

impl Custom {
    pub fn compile(configs: &[DetectorConfig]) -> Result<Self, ConfigError> {
        let mut detectors: Vec<Detector> = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let name = config.name.clone();
            let valid_name = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid_name {
                return Err(ConfigError::BadName { index, name });
            }
            let kind = format!("data.{name}");
            if detectors.iter().any(|d| d.kind == kind) {
                return Err(ConfigError::DuplicateName { index, name });
            }
            if config.regex.is_none() && config.fields.is_empty() {
                return Err(ConfigError::NothingToMatch { index, name });
            }
            if config.regex.is_none() && !config.keywords.is_empty() {
                return Err(ConfigError::KeywordsWithoutRegex { index, name });
            }
            if config.window > MAX_WINDOW {
                return Err(ConfigError::WindowTooLarge {
                    index,
                    name,
                    window: config.window,
                });
            }
            for (what, list) in [
                ("a keyword", &config.keywords),
                ("a field name", &config.fields),
            ] {
                if list.iter().any(|item| item.trim().is_empty()) {
                    return Err(ConfigError::Empty { index, name, what });
                }
            }
            let regex = match &config.regex {
                Some(pattern) if pattern.is_empty() => {
                    return Err(ConfigError::Empty {
                        index,
                        name,
                        what: "the regex",
                    });
                }
                Some(pattern) => Some(
                    RegexBuilder::new(pattern)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|error| ConfigError::BadRegex {
                            index,
                            name: name.clone(),
                            message: error.to_string(),
                        })?,
                ),
                None => None,
            };
            detectors.push(Detector {
                kind,
                class: config.class,
                severity: config.severity,
                regex,
                keywords: config
                    .keywords
                    .iter()
                    .map(|k| k.to_ascii_lowercase())
                    .collect(),
                window: config.window,
                fields: config
                    .fields
                    .iter()
                    .map(|f| f.to_ascii_lowercase())
                    .collect(),
                validator: config.validator,
            });
        }
        let (pattern_owner, patterns): (Vec<usize>, Vec<&str>) = detectors
            .iter()
            .enumerate()
            .filter_map(|(index, d)| d.regex.as_ref().map(|r| (index, r.as_str())))
            .unzip();
        let prefilter = RegexSetBuilder::new(patterns)
            .size_limit(REGEX_SIZE_LIMIT * detectors.len().max(1))
            .build()
            .map_err(|error| ConfigError::BadRegex {
                index: 0,
                name: "(all detectors together)".into(),
                message: error.to_string(),
            })?;
        Ok(Self {
            detectors,
            prefilter,
            pattern_owner,
        })
    }
}

/// Masked fields checked before use: a pointer starts with `/`, anything else is a field name.
pub fn check_masked_fields(fields: &[MaskedField]) -> Result<(), ConfigError> {
    match fields
        .iter()
        .enumerate()
        .find(|(_, f)| f.field.trim().is_empty() || f.field == "/")
    {
        Some((index, field)) => Err(ConfigError::BadMaskedField {
            index,
            field: field.field.clone(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(json: serde_json::Value) -> Result<Custom, ConfigError> {
        let config: Config = serde_json::from_value(json).expect("config parses");
        Custom::compile(&config.detectors)
    }

    #[test]
    fn a_valid_config_compiles_into_one_prefilter() {
        let custom = compile(serde_json::json!({"detectors": [
            {"name": "customer_id", "class": "business", "severity": "medium", "regex": "CUST-[0-9]{8}"},
            {"name": "loyalty", "class": "pii", "severity": "low", "fields": ["loyaltyNumber"]},
            {"name": "account", "class": "financial", "severity": "high", "regex": "[0-9]{12}", "keywords": ["account"], "window": 20, "validator": "luhn"},
        ]}))
        .expect("compiles");
        assert_eq!(custom.detectors.len(), 3);
        assert_eq!(custom.pattern_owner, [0, 2]);
        assert_eq!(custom.detectors[1].fields, ["loyaltynumber"]);
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let base =
            serde_json::json!({"name": "x", "class": "pii", "severity": "low", "regex": "a"});
        let with = |patch: serde_json::Value| {
            let mut detector = base.clone();
            for (key, value) in patch.as_object().expect("object").clone() {
                detector[key] = value;
            }
            compile(serde_json::json!({"detectors": [detector]})).expect_err("rejected")
        };
        assert!(matches!(
            with(serde_json::json!({"name": "Bad Name"})),
            ConfigError::BadName { .. }
        ));
        assert!(matches!(
            with(serde_json::json!({"regex": null})),
            ConfigError::NothingToMatch { .. }
        ));
        assert!(matches!(
            with(serde_json::json!({"regex": null, "fields": ["f"], "keywords": ["k"]})),
            ConfigError::KeywordsWithoutRegex { .. }
        ));
        assert!(matches!(
            with(serde_json::json!({"window": 5000})),
            ConfigError::WindowTooLarge { .. }
        ));
        assert!(matches!(
            with(serde_json::json!({"regex": "("})),
            ConfigError::BadRegex { .. }
        ));
        assert!(matches!(
            with(serde_json::json!({"keywords": [" "]})),
            ConfigError::Empty { .. }
        ));
        let twice =
            compile(serde_json::json!({"detectors": [base.clone(), base]})).expect_err("duplicate");
        assert!(matches!(twice, ConfigError::DuplicateName { index: 1, .. }));
        assert!(serde_json::from_value::<Config>(serde_json::json!({"detectors": [{"name": "x", "class": "pii", "severity": "low", "regexp": "a"}]})).is_err());
        assert!(serde_json::from_value::<Config>(serde_json::json!({"detectors": [{"name": "x", "class": "medical", "severity": "low", "regex": "a"}]})).is_err());
    }

    #[test]
    fn validators() {
        assert!(Validator::Luhn.accepts("4111-1111-1111-1111"));
        assert!(!Validator::Luhn.accepts("4111-1111-1111-1112"));
        assert!(Validator::Mod97.accepts("370400440532013000DE89"));
        assert!(Validator::None.accepts("anything"));
    }
}
