//! Kubernetes label selectors, as policies (and the inventory's tag rules) write them: the same
//! `matchLabels` and `matchExpressions` a Deployment or NetworkPolicy uses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// Anything that holds labels: a map, or a compact index's own form.
pub trait Labels {
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl LabelSelector {
    /// As Kubernetes defines it: every label and every expression must hold; an empty selector
    /// matches everything.
    pub fn matches(&self, labels: &impl Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.label(key) == Some(value.as_str()))
            && self
                .match_expressions
                .iter()
                .all(|requirement| requirement.matches(labels))
    }

    /// What Kubernetes would refuse: a malformed key or value, values on `Exists`, none on `In`.
    /// The message names the offending part relative to the selector (`matchLabels.app`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (key, value) in &self.match_labels {
            let field = format!("matchLabels.{key}");
            check_key(key).map_err(|message| (field.clone(), message))?;
            check_value(value).map_err(|message| (field, message))?;
        }
        for (position, requirement) in self.match_expressions.iter().enumerate() {
            let field = format!("matchExpressions[{position}]");
            check_key(&requirement.key).map_err(|message| (format!("{field}.key"), message))?;
            match requirement.operator {
                Operator::In | Operator::NotIn if requirement.values.is_empty() => {
                    return Err((
                        format!("{field}.values"),
                        "In and NotIn need at least one value".to_owned(),
                    ));
                }
                Operator::Exists | Operator::DoesNotExist if !requirement.values.is_empty() => {
                    return Err((
                        format!("{field}.values"),
                        "Exists and DoesNotExist take no values; remove `values`".to_owned(),
                    ));
                }
                _ => {}
            }
            for (index, value) in requirement.values.iter().enumerate() {
                check_value(value)
                    .map_err(|message| (format!("{field}.values[{index}]"), message))?;
            }
        }
        Ok(())
    }
}

impl Requirement {
    fn matches(&self, labels: &impl Labels) -> bool {
        let value = labels.label(&self.key);
        let listed = |value: &str| self.values.iter().any(|listed| listed == value);
        match self.operator {
            Operator::In => value.is_some_and(listed),
            Operator::NotIn => value.is_none_or(|value| !listed(value)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let valid_prefix = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !valid_prefix {
            return Err(format!(
                "{key:?}: a label key's prefix is a DNS subdomain such as example.com"
            ));
        }
    }
    if name.is_empty() || !is_label_name(name) {
        return Err(format!(
            "{key:?}: a label name is 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "{value:?}: a label value is at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

fn is_label_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn selector(yaml: &str) -> LabelSelector {
        serde_yaml::from_str(yaml).expect("selector parses")
    }

    #[test]
    fn labels_and_expressions_must_all_hold() {
        let selector = selector(
            "matchLabels: {app: db}\nmatchExpressions:\n  - {key: tier, operator: In, values: [gold, silver]}\n  - {key: canary, operator: DoesNotExist}\n",
        );
        assert!(selector.matches(&labels(&[("app", "db"), ("tier", "gold")])));
        assert!(!selector.matches(&labels(&[("app", "db"), ("tier", "bronze")])));
        assert!(!selector.matches(&labels(&[("app", "db"), ("tier", "gold"), ("canary", "")])));
        assert!(!selector.matches(&labels(&[("tier", "gold")])));
    }

    #[test]
    fn not_in_matches_an_absent_label_as_kubernetes_does() {
        let selector = selector("matchExpressions: [{key: env, operator: NotIn, values: [prod]}]");
        assert!(selector.matches(&labels(&[])));
        assert!(selector.matches(&labels(&[("env", "dev")])));
        assert!(!selector.matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn validation_names_the_part_that_kubernetes_would_refuse() {
        let cases = [
            ("matchLabels: {\"-app\": db}", "matchLabels.-app"),
            ("matchLabels: {app: \"db!\"}", "matchLabels.app"),
            (
                "matchLabels: {\"Example.com/app\": db}",
                "matchLabels.Example.com/app",
            ),
            (
                "matchExpressions: [{key: app, operator: In}]",
                "matchExpressions[0].values",
            ),
            (
                "matchExpressions: [{key: app, operator: Exists, values: [x]}]",
                "matchExpressions[0].values",
            ),
        ];
        for (yaml, field) in cases {
            let error = selector(yaml).validate().expect_err(yaml);
            assert_eq!(error.0, field, "{yaml}: {}", error.1);
        }
        selector("matchLabels: {app.kubernetes.io/name: db, moat.dev/team: a_b-c.d}")
            .validate()
            .expect("valid keys");
    }

    #[test]
    fn unknown_operators_and_fields_are_parse_errors() {
        assert!(
            serde_yaml::from_str::<LabelSelector>("matchExpressions: [{key: a, operator: Equals}]")
                .is_err()
        );
        assert!(serde_yaml::from_str::<LabelSelector>("matchLabel: {a: b}").is_err());
    }

    proptest! {
        #[test]
        fn empty_selector_matches_everything(pairs in proptest::collection::btree_map("[a-z]{1,5}", "[a-z]{0,5}", 0..6)) {
            prop_assert!(LabelSelector::default().matches(&pairs));
        }

        #[test]
        fn in_is_the_complement_of_not_in(value in proptest::option::of("[a-c]"), values in proptest::collection::vec("[a-c]", 1..3)) {
            let mut labels = BTreeMap::new();
            if let Some(value) = value {
                labels.insert("k".to_owned(), value);
            }
            let requirement = |operator| LabelSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![Requirement { key: "k".to_owned(), operator, values: values.clone() }],
            };
            prop_assert_ne!(requirement(Operator::In).matches(&labels), requirement(Operator::NotIn).matches(&labels));
        }
    }
}
