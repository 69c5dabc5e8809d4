//! How a request authenticated, judged from its headers and query before the agent redacts
//! credential values (the scheme is kept, the secret never is).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthScheme {
    None,
    Basic,
    /// A bearer token that is not a JWT (opaque).
    Bearer,
    BearerJwt,
    /// `Authorization` with another scheme (Digest, AWS4-HMAC-SHA256, Negotiate, ...).
    OtherAuthorization,
    ApiKeyHeader,
    ApiKeyQuery,
    CookieSession,
}

impl AuthScheme {
    pub const ALL: [Self; 8] = [
        Self::None,
        Self::Basic,
        Self::Bearer,
        Self::BearerJwt,
        Self::OtherAuthorization,
        Self::ApiKeyHeader,
        Self::ApiKeyQuery,
        Self::CookieSession,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Basic => "basic",
            Self::Bearer => "bearer",
            Self::BearerJwt => "bearer_jwt",
            Self::OtherAuthorization => "other_authorization",
            Self::ApiKeyHeader => "api_key_header",
            Self::ApiKeyQuery => "api_key_query",
            Self::CookieSession => "cookie_session",
        }
    }

    /// One bit per scheme, for compact sets.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }

    pub fn is_authenticated(self) -> bool {
        self != Self::None
    }
}

/// Header names whose values are credentials in any deployment: the agent never lets their
/// values out, and the collector refuses records that carry them.
pub const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
];

/// Whether header `name` is one of [`CREDENTIAL_HEADERS`] or [`API_KEY_HEADERS`].
pub fn is_credential_header(name: &str) -> bool {
    CREDENTIAL_HEADERS
        .iter()
        .chain(&API_KEY_HEADERS)
        .any(|credential| credential.eq_ignore_ascii_case(name))
}

/// Header names that carry API keys in common APIs and gateways.
pub const API_KEY_HEADERS: [&str; 8] = [
    "x-api-key",
    "api_key",
    "api-key",
    "apikey",
    "x-apikey",
    "x-auth-token",
    "x-access-token",
    "x-goog-api-key",
];

/// Whether query parameter `name` carries a key or token ([`API_KEY_PARAMETERS`]).
pub fn is_api_key_parameter(name: &str) -> bool {
    API_KEY_PARAMETERS
        .iter()
        .any(|key| key.eq_ignore_ascii_case(name))
}

/// Query parameter names that carry keys or tokens.
pub const API_KEY_PARAMETERS: [&str; 6] = [
    "api_key",
    "apikey",
    "api-key",
    "key",
    "access_token",
    "token",
];

/// Whether `token` has the shape of a compact JWS: three base64url parts, the first a JSON
/// object (`eyJ` is how `{"` encodes).
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let base64url = |part: &str| {
        part.bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    };
    header.starts_with("eyJ")
        && !payload.is_empty()
        && base64url(header)
        && base64url(payload)
        && base64url(signature)
}

/// The strongest credential the request carries: `Authorization` first, then key headers, then
/// keys in the query, then cookies. `extra_key_headers` are deployment-specific key headers
/// (lower-case).
pub fn scheme_of<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    query: Option<&str>,
    extra_key_headers: &[String],
) -> AuthScheme {
    let mut found = AuthScheme::None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("authorization") {
            let value = value.trim();
            let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
            return if scheme.eq_ignore_ascii_case("basic") {
                AuthScheme::Basic
            } else if scheme.eq_ignore_ascii_case("bearer") {
                if looks_like_jwt(credentials.trim()) {
                    AuthScheme::BearerJwt
                } else {
                    AuthScheme::Bearer
                }
            } else {
                AuthScheme::OtherAuthorization
            };
        }
        let is_key_header = API_KEY_HEADERS
            .iter()
            .any(|key| key.eq_ignore_ascii_case(name))
            || extra_key_headers
                .iter()
                .any(|key| key.eq_ignore_ascii_case(name));
        if is_key_header && !value.trim().is_empty() {
            found = AuthScheme::ApiKeyHeader;
        } else if name.eq_ignore_ascii_case("cookie") && found == AuthScheme::None {
            found = AuthScheme::CookieSession;
        }
    }
    if found == AuthScheme::ApiKeyHeader {
        return found;
    }
    let key_in_query = query.is_some_and(|query| {
        query.split('&').any(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            !value.is_empty() && is_api_key_parameter(name)
        })
    });
    if key_in_query {
        AuthScheme::ApiKeyQuery
    } else {
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme(headers: &[(&str, &str)], query: Option<&str>) -> AuthScheme {
        scheme_of(headers.iter().copied(), query, &["x-tenant-key".to_owned()])
    }

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";

    #[test]
    fn each_scheme_is_recognised() {
        assert_eq!(scheme(&[], None), AuthScheme::None);
        assert_eq!(
            scheme(&[("Authorization", "Basic dTpw")], None),
            AuthScheme::Basic
        );
        assert_eq!(
            scheme(&[("authorization", "bearer opaque-token")], None),
            AuthScheme::Bearer
        );
        assert_eq!(
            scheme(&[("Authorization", &format!("Bearer {JWT}"))], None),
            AuthScheme::BearerJwt
        );
        assert_eq!(
            scheme(&[("Authorization", "AWS4-HMAC-SHA256 Credential=x")], None),
            AuthScheme::OtherAuthorization
        );
        assert_eq!(
            scheme(&[("X-API-Key", "k")], None),
            AuthScheme::ApiKeyHeader
        );
        assert_eq!(
            scheme(&[("x-tenant-key", "k")], None),
            AuthScheme::ApiKeyHeader
        );
        assert_eq!(
            scheme(&[], Some("a=1&api_key=secret")),
            AuthScheme::ApiKeyQuery
        );
        assert_eq!(
            scheme(&[("Cookie", "session=abc")], None),
            AuthScheme::CookieSession
        );
    }

    #[test]
    fn the_strongest_credential_wins_and_empty_ones_do_not_count() {
        assert_eq!(
            scheme(&[("Cookie", "s=1"), ("Authorization", "Basic x")], None),
            AuthScheme::Basic
        );
        assert_eq!(
            scheme(&[("Cookie", "s=1"), ("x-api-key", "k")], Some("token=t")),
            AuthScheme::ApiKeyHeader
        );
        assert_eq!(
            scheme(&[("x-api-key", " ")], Some("key=")),
            AuthScheme::None
        );
    }

    #[test]
    fn jwt_shapes() {
        assert!(looks_like_jwt(JWT));
        assert!(!looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0"));
        assert!(!looks_like_jwt("abc.def.ghi"));
        assert!(!looks_like_jwt("eyJ.x.y.z"));
        assert!(!looks_like_jwt("eyJh bG.x.y"));
    }
}
