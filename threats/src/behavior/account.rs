//! The account a login request names, for `threat.credential_stuffing`.

use base64::Engine as _;
use intelligence::exchange::{REDACTED, Side};
use serde_json::Value;

use crate::decode;

/// Login bodies are small; a larger body is not read for an account.
const MAX_LOGIN_BODY_BYTES: usize = 16 * 1024;
/// Characters of an account kept (it is hashed at once; this bounds the work).
const MAX_ACCOUNT_CHARS: usize = 256;
/// Field names (lower case, without `_` and `-`) that name the account in a login body.
const ACCOUNT_FIELDS: &[&str] = &[
    "username",
    "user",
    "login",
    "email",
    "emailaddress",
    "mail",
    "account",
    "accountname",
    "userid",
    "loginid",
    "phone",
    "phonenumber",
];
/// Field names that carry the secret: only an object with both is a login.
const SECRET_FIELDS: &[&str] = &["password", "passwd", "pass", "pwd", "secret", "passphrase"];

/// The account `request` logs in as: the user of `Basic` credentials (only before the agent
/// redacts them), or the account field (`username`, `user`, `email`, `login`, ...) of a JSON
/// or form body that also carries a password field, at the top level or one object down
/// (`{"user": {"email": ..., "password": ...}}`, GraphQL `variables`). None when the request
/// is not a login.
pub fn login_account(request: &Side<'_>) -> Option<String> {
    basic_user(request).or_else(|| body_account(request))
}

/// The user name of the request's `Basic` credentials, unless they were redacted.
pub fn basic_user(request: &Side<'_>) -> Option<String> {
    let value = request.header("authorization")?.trim();
    if value == REDACTED {
        return None;
    }
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let decoded = String::from_utf8_lossy(&decoded);
    let (user, _) = decoded.split_once(':')?;
    account(user)
}

fn body_account(request: &Side<'_>) -> Option<String> {
    let body = request.plain_body()?;
    if body.is_empty() || body.len() > MAX_LOGIN_BODY_BYTES {
        return None;
    }
    let media = request.media_type().unwrap_or_default();
    if media.contains("json") || body.trim_ascii_start().starts_with(b"{") {
        let json: Value = serde_json::from_slice(body).ok()?;
        let fields = json.as_object()?;
        return object_account(fields).or_else(|| {
            fields
                .values()
                .filter_map(Value::as_object)
                .find_map(object_account)
        });
    }
    if media == "application/x-www-form-urlencoded" || media.is_empty() {
        let text = std::str::from_utf8(body).ok()?;
        let pairs: Vec<(String, String)> = text
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, value)| {
                (
                    decode::percent_decode(name, true),
                    decode::percent_decode(value, true),
                )
            })
            .collect();
        let has_secret = pairs.iter().any(|(name, _)| is_field(name, SECRET_FIELDS));
        return pairs
            .iter()
            .filter(|_| has_secret)
            .find(|(name, _)| is_field(name, ACCOUNT_FIELDS))
            .and_then(|(_, value)| account(value));
    }
    None
}

fn object_account(fields: &serde_json::Map<String, Value>) -> Option<String> {
    if !fields.keys().any(|name| is_field(name, SECRET_FIELDS)) {
        return None;
    }
    fields
        .iter()
        .filter(|(name, _)| is_field(name, ACCOUNT_FIELDS))
        .find_map(|(_, value)| value.as_str())
        .and_then(account)
}

fn is_field(name: &str, names: &[&str]) -> bool {
    let bare: String = name
        .chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect();
    names.contains(&bare.as_str())
}

fn account(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.chars().take(MAX_ACCOUNT_CHARS).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side<'a>(headers: &'a [(&'a str, &'a str)], body: &'a [u8]) -> Side<'a> {
        Side {
            headers,
            body,
            body_complete: true,
            seen: true,
        }
    }

    #[test]
    fn basic_credentials_name_their_user_unless_redacted() {
        // "alice:secret"
        let headers = [("Authorization", "Basic YWxpY2U6c2VjcmV0")];
        assert_eq!(
            login_account(&side(&headers, b"")).as_deref(),
            Some("alice")
        );
        let redacted = [("Authorization", REDACTED)];
        assert_eq!(login_account(&side(&redacted, b"")), None);
        let broken = [("Authorization", "Basic !!!")];
        assert_eq!(login_account(&side(&broken, b"")), None);
    }

    #[test]
    fn json_and_form_logins_name_their_account() {
        let json = [("Content-Type", "application/json")];
        let body = br#"{"email": "Bob@example.com", "password": "hunter2"}"#;
        assert_eq!(
            login_account(&side(&json, body)).as_deref(),
            Some("Bob@example.com")
        );
        let nested = br#"{"variables": {"user_name": "carol", "pass": "x"}, "query": "mutation"}"#;
        assert_eq!(
            login_account(&side(&json, nested)).as_deref(),
            Some("carol")
        );
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        assert_eq!(
            login_account(&side(&form, b"login=dave%40example.com&pwd=x")).as_deref(),
            Some("dave@example.com")
        );
    }

    #[test]
    fn a_body_without_a_password_is_not_a_login() {
        let json = [("Content-Type", "application/json")];
        let profile = br#"{"username": "erin", "bio": "hello"}"#;
        assert_eq!(login_account(&side(&json, profile)), None);
        assert_eq!(login_account(&side(&json, b"[1, 2]")), None);
        assert_eq!(login_account(&side(&json, b"{not json")), None);
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        assert_eq!(login_account(&side(&form, b"user=frank&q=x")), None);
    }
}
