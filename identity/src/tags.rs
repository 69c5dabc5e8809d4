//! Tags: short key/value facts an operator hangs on workloads and ranges (product, team, owner,
//! environment, anything else), carried by every record that names them.
//!
//! On Kubernetes objects they come from labels and annotations: `moat.dev/product`,
//! `moat.dev/team`, `moat.dev/owner`, `moat.dev/environment`, and `moat.dev/tag-<name>` for any
//! other tag `<name>`. Annotations exist because owners and e-mail addresses are not valid label
//! values.

use std::{collections::BTreeMap, sync::Arc};

const PREFIX: &str = "moat.dev/";
const NAMED: [&str; 4] = ["product", "team", "owner", "environment"];
const FREE_PREFIX: &str = "tag-";

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Tags(BTreeMap<Arc<str>, Arc<str>>);

impl Tags {
    /// Validated tags from a file: names are 1 to 63 lower-case letters, digits, '-', '_' or '.';
    /// values are free text up to 256 bytes. The error is (key, message).
    pub fn from_pairs(pairs: &BTreeMap<String, String>) -> Result<Self, (String, String)> {
        let mut tags = Self::default();
        for (key, value) in pairs {
            if !is_tag_name(key) {
                return Err((
                    key.clone(),
                    format!(
                        "{key:?} is not a tag name: 1 to 63 lower-case letters, digits, '-', '_' or '.'"
                    ),
                ));
            }
            if value.len() > 256 {
                return Err((key.clone(), "a tag value is at most 256 bytes".to_owned()));
            }
            tags.insert(key, value);
        }
        Ok(tags)
    }

    /// The tags an object's labels or annotations declare. Malformed ones are skipped: the
    /// object is someone else's, and one bad annotation must not hide the others.
    pub fn from_metadata(entries: &BTreeMap<String, String>) -> Self {
        let mut tags = Self::default();
        for (key, value) in entries {
            let Some(name) = key.strip_prefix(PREFIX) else {
                continue;
            };
            let name = if NAMED.contains(&name) {
                name
            } else if let Some(free) = name.strip_prefix(FREE_PREFIX) {
                free
            } else {
                continue;
            };
            if is_tag_name(name) && value.len() <= 256 {
                tags.insert(name, value);
            }
        }
        tags
    }

    pub fn insert(&mut self, key: &str, value: &str) {
        self.0.insert(Arc::from(key), Arc::from(value));
    }

    /// `other` wins where both have a tag.
    pub fn overlay(&mut self, other: &Self) {
        for (key, value) in &other.0 {
            self.0.insert(key.clone(), value.clone());
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Arc<str>> {
        self.0.remove(key)
    }

    pub fn get(&self, key: &str) -> Option<Arc<str>> {
        self.0.get(key).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(key, value)| (&**key, &**value))
    }
}

fn is_tag_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn metadata_tags_are_the_moat_keys_only() {
        let tags = Tags::from_metadata(&map(&[
            ("moat.dev/product", "checkout"),
            ("moat.dev/owner", "payments@example.com"),
            ("moat.dev/tag-pci", "in-scope"),
            ("moat.dev/tag-", "empty name"),
            ("moat.dev/tag-Bad", "upper case"),
            ("moat.dev/unknown", "not a tag"),
            ("app", "web"),
            ("example.com/product", "other vendor"),
        ]));
        let collected: Vec<(&str, &str)> = tags.iter().collect();
        assert_eq!(
            collected,
            vec![
                ("owner", "payments@example.com"),
                ("pci", "in-scope"),
                ("product", "checkout"),
            ]
        );
    }

    #[test]
    fn overlay_lets_the_later_source_win() {
        let mut tags =
            Tags::from_metadata(&map(&[("moat.dev/team", "a"), ("moat.dev/product", "x")]));
        tags.overlay(&Tags::from_metadata(&map(&[("moat.dev/team", "b")])));
        assert_eq!(tags.get("team").as_deref(), Some("b"));
        assert_eq!(tags.get("product").as_deref(), Some("x"));
    }

    #[test]
    fn file_tags_are_validated() {
        assert!(Tags::from_pairs(&map(&[("product", "checkout")])).is_ok());
        assert_eq!(
            Tags::from_pairs(&map(&[("Product", "x")]))
                .expect_err("upper case")
                .0,
            "Product"
        );
        assert!(Tags::from_pairs(&map(&[("a", &"x".repeat(257))])).is_err());
    }
}
