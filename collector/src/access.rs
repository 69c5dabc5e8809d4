//! Who may query: bearer tokens from a file, each with a role. No token, no data; health and
//! reflection stay open (probes and tools need them). Agents' ingest is not covered by tokens.
//!
//! The file is read again when it changes, so tokens rotate without a restart: in Kubernetes,
//! a Secret mounted as a volume is such a file, and the kubelet swaps it in place.

use std::{
    collections::HashMap,
    path::Path,
    sync::{PoisonError, RwLock},
};

use serde::Deserialize;
use tonic::{Request, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Queries.
    Reader,
    /// Queries, and what operators change (nothing yet besides reading).
    Admin,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    /// Who holds it, for logs.
    name: String,
    token: String,
    role: Role,
}

/// Token to (holder, role).
type Tokens = HashMap<String, (String, Role)>;

/// The tokens, or none: then queries need no token (only allowed on a loopback address).
#[derive(Debug, Default)]
pub struct Access {
    tokens: Option<RwLock<Tokens>>,
}

impl Access {
    pub fn open() -> Self {
        Self { tokens: None }
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = read(path)?;
        let tokens = parse(&text)
            .map_err(|error| anyhow::anyhow!("--tokens {}: {error}", path.display()))?;
        Ok(Self {
            tokens: Some(RwLock::new(tokens)),
        })
    }

    /// Takes the tokens of `text` (the file's new contents) if they are valid; otherwise the
    /// tokens in force stay, and the error says why. An open collector stays open.
    pub fn replace(&self, text: &str) -> anyhow::Result<usize> {
        let Some(current) = &self.tokens else {
            return Ok(0);
        };
        let tokens = parse(text)?;
        let count = tokens.len();
        *current.write().unwrap_or_else(PoisonError::into_inner) = tokens;
        Ok(count)
    }

    #[cfg(test)]
    fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(Self {
            tokens: Some(RwLock::new(parse(text)?)),
        })
    }
}

/// The tokens file's text.
pub fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("--tokens {}: {error}", path.display()))
}

fn parse(text: &str) -> anyhow::Result<Tokens> {
    let file: TokenFile = serde_yaml::from_str(text)?;
    let mut tokens = HashMap::new();
    for entry in file.tokens {
        if entry.token.len() < 16 {
            anyhow::bail!(
                "the token of {:?} is shorter than 16 characters; use a long random one",
                entry.name
            );
        }
        if tokens
            .insert(entry.token, (entry.name.clone(), entry.role))
            .is_some()
        {
            anyhow::bail!(
                "{:?} reuses another entry's token; give each holder its own",
                entry.name
            );
        }
    }
    Ok(tokens)
}

impl Access {
    pub fn is_open(&self) -> bool {
        self.tokens.is_none()
    }

    /// The role of the request's bearer token, or why there is none.
    pub fn role(&self, request: &Request<()>) -> Result<Option<Role>, Status> {
        let Some(tokens) = &self.tokens else {
            return Ok(None);
        };
        let tokens = tokens.read().unwrap_or_else(PoisonError::into_inner);
        let header = request.metadata().get("authorization").ok_or_else(|| {
            Status::unauthenticated("no token: send `authorization: Bearer <token>`")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("the authorization header is not `Bearer <token>`")
            })?;
        // Compare every token in full, so the time taken says nothing about how close a guess was.
        let found = tokens.iter().fold(None, |found, (candidate, entry)| {
            if constant_time_eq(candidate, token) {
                Some(entry)
            } else {
                found
            }
        });
        match found {
            Some((_, role)) => Ok(Some(*role)),
            None => Err(Status::unauthenticated("unknown token")),
        }
    }
}

fn constant_time_eq(one: &str, other: &str) -> bool {
    let (one, other) = (one.as_bytes(), other.as_bytes());
    if one.len() != other.len() {
        return false;
    }
    one.iter()
        .zip(other)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(header: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(header) = header {
            request
                .metadata_mut()
                .insert("authorization", header.parse().expect("header"));
        }
        request
    }

    #[test]
    fn tokens_give_roles_and_anything_else_is_refused() {
        let access = Access::parse(
            "tokens:\n  - { name: ci, token: reader-token-0123456789, role: reader }\n  - { name: ops, token: admin-token-0123456789, role: admin }\n",
        )
        .expect("valid");
        assert_eq!(
            access
                .role(&request(Some("Bearer reader-token-0123456789")))
                .expect("ok"),
            Some(Role::Reader)
        );
        assert_eq!(
            access
                .role(&request(Some("Bearer admin-token-0123456789")))
                .expect("ok"),
            Some(Role::Admin)
        );
        for bad in [
            None,
            Some("Bearer nope"),
            Some("Basic abc"),
            Some("Bearer reader-token-012345678"),
        ] {
            assert_eq!(
                access.role(&request(bad)).expect_err("refused").code(),
                tonic::Code::Unauthenticated
            );
        }
        assert_eq!(Access::open().role(&request(None)).expect("open"), None);
    }

    #[test]
    fn tokens_rotate_and_a_bad_edit_keeps_the_old_ones() {
        let access =
            Access::parse("tokens: [{ name: a, token: first-token-0123456789, role: reader }]")
                .expect("valid");
        let role = |token: &str| access.role(&request(Some(&format!("Bearer {token}")))).ok();
        assert_eq!(role("first-token-0123456789"), Some(Some(Role::Reader)));
        assert_eq!(
            access
                .replace("tokens: [{ name: a, token: second-token-0123456789, role: admin }]")
                .expect("valid edit"),
            1
        );
        assert_eq!(role("first-token-0123456789"), None, "rotated out");
        assert_eq!(role("second-token-0123456789"), Some(Some(Role::Admin)));
        assert!(
            access
                .replace("tokens: [{ name: a, token: short, role: admin }]")
                .is_err()
        );
        assert_eq!(
            role("second-token-0123456789"),
            Some(Some(Role::Admin)),
            "kept"
        );
        assert_eq!(Access::open().replace("tokens: []").expect("ignored"), 0);
    }

    #[test]
    fn weak_or_shared_tokens_are_refused() {
        assert!(Access::parse("tokens: [{ name: a, token: short, role: reader }]").is_err());
        assert!(Access::parse("tokens:\n  - { name: a, token: same-token-0123456789, role: reader }\n  - { name: b, token: same-token-0123456789, role: admin }\n").is_err());
        assert!(
            Access::parse("tokens: [{ name: a, token: long-enough-token-01, role: root }]")
                .is_err()
        );
    }
}
