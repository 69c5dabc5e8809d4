//! JWTs decoded without being trusted: the signature is never checked (the agent has no keys),
//! so everything here is about what the token says of itself and how the server treated it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use intelligence::Severity;
use serde_json::{Map, Value};

/// Longest token decoded; real ones are a few kilobytes at most.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Clock skew forgiven before an expired token counts as accepted.
pub const EXPIRY_LEEWAY_SECS: u64 = 60;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("token is {length} bytes, more than the {MAX_TOKEN_BYTES} decoded")]
    TooLong { length: usize },
    #[error("token does not have three dot-separated parts")]
    Shape,
    #[error("token {part} is not base64url")]
    Base64 { part: &'static str },
    #[error("token {part} is not a JSON object")]
    Json { part: &'static str },
}

/// A decoded compact JWS: header and claims, signature ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwt {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// Whether the third part is empty (an unsigned token).
    pub unsigned: bool,
}

pub fn decode(token: &str) -> Result<Jwt, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLong {
            length: token.len(),
        });
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Shape);
    };
    let object = |text: &str, part: &'static str| -> Result<Map<String, Value>, JwtError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| JwtError::Base64 { part })?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(JwtError::Json { part }),
        }
    };
    Ok(Jwt {
        header: object(header, "header")?,
        claims: object(claims, "claims")?,
        unsigned: signature.is_empty(),
    })
}

/// How a token was used, as far as the checks need it.
#[derive(Debug, Clone, Copy)]
pub struct TokenUse<'a> {
    /// The response status, for a token the client presented.
    pub status: Option<u16>,
    /// Seconds since the Unix epoch when the call ended (the agent's clock).
    pub now_unix_secs: u64,
    /// The called service's name; audiences are expected to name it.
    pub service: &'a str,
    /// The client sent it (rather than the server issuing it in a response).
    pub presented: bool,
}

/// One problem with a token, before it gets a location and evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: &'static str,
    pub severity: Severity,
    pub detail: String,
}

/// The hygiene checks that need only the token and its use; PII in claims is checked by the
/// scanner, which owns the detectors.
pub fn check(jwt: &Jwt, token_use: TokenUse<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let alg = jwt.header.get("alg").and_then(Value::as_str);
    if alg.is_none_or(|alg| alg.eq_ignore_ascii_case("none")) {
        problems.push(Problem {
            kind: "auth.jwt_alg_none",
            severity: Severity::High,
            detail: format!("alg {}", alg.unwrap_or("missing")),
        });
    }
    let exp = jwt.claims.get("exp").and_then(Value::as_f64);
    let accepted = token_use
        .status
        .is_some_and(|status| (200..300).contains(&status));
    if let Some(exp) = exp
        && token_use.presented
        && accepted
        && exp + (EXPIRY_LEEWAY_SECS as f64) < token_use.now_unix_secs as f64
    {
        problems.push(Problem {
            kind: "auth.jwt_expired_accepted",
            severity: Severity::High,
            detail: format!(
                "expired {}s before the call",
                token_use.now_unix_secs as f64 - exp
            ),
        });
    }
    let broad_scopes: Vec<&str> = ["scope", "scp", "scopes", "permissions", "roles", "groups"]
        .iter()
        .filter_map(|claim| jwt.claims.get(*claim))
        .flat_map(strings)
        .filter(|scope| overbroad_scope(scope))
        .collect();
    if !broad_scopes.is_empty() {
        problems.push(Problem {
            kind: "auth.token_overbroad",
            severity: Severity::Medium,
            detail: format!("scopes {}", broad_scopes.join(" ")),
        });
    }
    let audiences: Vec<&str> = jwt.claims.get("aud").map(strings).unwrap_or_default();
    let service = token_use.service.to_ascii_lowercase();
    let wildcard = audiences.iter().any(|aud| aud.trim() == "*");
    let elsewhere = !service.is_empty()
        && !audiences.is_empty()
        && !audiences
            .iter()
            .any(|aud| aud.to_ascii_lowercase().contains(&service));
    if token_use.presented && (wildcard || elsewhere) {
        problems.push(Problem {
            kind: "auth.token_overbroad",
            severity: Severity::Medium,
            detail: format!("audience {} not {}", audiences.join(" "), token_use.service),
        });
    }
    problems
}

/// A claim's strings: a space-separated string (OAuth `scope`) or an array of strings.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(text) => text.split_whitespace().collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Wildcards (`*`, `api:*`, `*.write`) and administrative grants (`admin`, `org:admin`,
/// `superuser`, `root`) give more than any one call needs.
fn overbroad_scope(scope: &str) -> bool {
    let scope = scope.to_ascii_lowercase();
    scope.contains('*')
        || scope.split([':', '.', '/', '_', '-']).any(|word| {
            matches!(
                word,
                "admin" | "administrator" | "superuser" | "root" | "all" | "full_access"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, claims: &str, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    fn kinds(token_text: &str, token_use: TokenUse<'_>) -> Vec<&'static str> {
        let jwt = decode(token_text).expect("test token decodes");
        check(&jwt, token_use).into_iter().map(|p| p.kind).collect()
    }

    const USE: TokenUse<'static> = TokenUse {
        status: Some(200),
        now_unix_secs: 2_000_000_000,
        service: "payments",
        presented: true,
    };

    #[test]
    fn decodes_without_trusting() {
        let jwt = decode(&token(r#"{"alg":"HS256"}"#, r#"{"sub":"1"}"#, "abc")).expect("decodes");
        assert_eq!(jwt.claims.get("sub"), Some(&Value::from("1")));
        assert!(!jwt.unsigned);
        assert_eq!(decode("a.b"), Err(JwtError::Shape));
        assert_eq!(decode("!!.e30.x"), Err(JwtError::Base64 { part: "header" }));
        assert_eq!(
            decode(&token("[1]", "{}", "")),
            Err(JwtError::Json { part: "header" })
        );
        assert!(matches!(
            decode(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(JwtError::TooLong { .. })
        ));
    }

    #[test]
    fn hygiene_checks() {
        assert_eq!(
            kinds(&token(r#"{"alg":"none"}"#, "{}", ""), USE),
            ["auth.jwt_alg_none"]
        );
        assert_eq!(
            kinds(&token(r#"{"typ":"JWT"}"#, "{}", ""), USE),
            ["auth.jwt_alg_none"]
        );
        let expired = token(r#"{"alg":"RS256"}"#, r#"{"exp":1000}"#, "s");
        assert_eq!(kinds(&expired, USE), ["auth.jwt_expired_accepted"]);
        assert!(
            kinds(
                &expired,
                TokenUse {
                    status: Some(401),
                    ..USE
                }
            )
            .is_empty()
        );
        assert!(
            kinds(
                &expired,
                TokenUse {
                    presented: false,
                    ..USE
                }
            )
            .is_empty()
        );
        let fresh = token(r#"{"alg":"RS256"}"#, r#"{"exp":2000000030}"#, "s");
        assert!(kinds(&fresh, USE).is_empty(), "within the leeway");
        let admin = token(
            r#"{"alg":"RS256"}"#,
            r#"{"scope":"read:orders org:admin"}"#,
            "s",
        );
        assert_eq!(kinds(&admin, USE), ["auth.token_overbroad"]);
        let wildcard = token(r#"{"alg":"RS256"}"#, r#"{"scp":["orders:*"]}"#, "s");
        assert_eq!(kinds(&wildcard, USE), ["auth.token_overbroad"]);
        let narrow = token(
            r#"{"alg":"RS256"}"#,
            r#"{"scope":"read:orders","aud":"https://payments.example.com"}"#,
            "s",
        );
        assert!(kinds(&narrow, USE).is_empty());
        let elsewhere = token(r#"{"alg":"RS256"}"#, r#"{"aud":["billing"]}"#, "s");
        assert_eq!(kinds(&elsewhere, USE), ["auth.token_overbroad"]);
        assert!(kinds(&elsewhere, TokenUse { service: "", ..USE }).is_empty());
    }
}
