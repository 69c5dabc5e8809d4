//! Response headers: security headers a browser-facing page should carry, and CORS answers
//! that hand another origin the user's credentials.

use intelligence::exchange::Side;

/// Names of the missing security headers of an HTML response, empty when nothing is missing.
pub fn missing_security_headers(response: &Side<'_>) -> Vec<&'static str> {
    let html = response
        .media_type()
        .is_some_and(|media| media == "text/html" || media == "application/xhtml+xml");
    if !html {
        return Vec::new();
    }
    let csp = response.header("content-security-policy");
    let mut missing = Vec::new();
    if csp.is_none() {
        missing.push("content-security-policy");
    }
    if response.header("strict-transport-security").is_none() {
        missing.push("strict-transport-security");
    }
    if !response
        .header("x-content-type-options")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("nosniff"))
    {
        missing.push("x-content-type-options");
    }
    let framing_in_csp =
        csp.is_some_and(|policy| policy.to_ascii_lowercase().contains("frame-ancestors"));
    if response.header("x-frame-options").is_none() && !framing_in_csp {
        missing.push("x-frame-options");
    }
    missing
}

/// The CORS rule broken: any origin, reflected or `null`, allowed together with credentials.
pub fn cors(request: &Side<'_>, response: &Side<'_>) -> Option<&'static str> {
    let allowed = response.header("access-control-allow-origin")?.trim();
    let credentials = response
        .header("access-control-allow-credentials")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !credentials {
        return None;
    }
    if allowed == "*" {
        return Some("cors.wildcard_with_credentials");
    }
    if allowed.eq_ignore_ascii_case("null") {
        return Some("cors.null_origin_with_credentials");
    }
    let origin = request.header("origin")?.trim();
    let host = request.header("host").unwrap_or_default().trim();
    let same_host = origin
        .split("://")
        .nth(1)
        .is_some_and(|o| o.eq_ignore_ascii_case(host));
    (allowed.eq_ignore_ascii_case(origin) && !same_host)
        .then_some("cors.reflected_origin_with_credentials")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side<'a>(headers: &'a [(&'a str, &'a str)]) -> Side<'a> {
        Side {
            headers,
            body: b"",
            body_complete: true,
            seen: true,
        }
    }

    #[test]
    fn html_pages_need_their_headers_and_apis_do_not() {
        let bare = [("Content-Type", "text/html; charset=utf-8")];
        assert_eq!(missing_security_headers(&side(&bare)).len(), 4);
        let full = [
            ("Content-Type", "text/html"),
            (
                "Content-Security-Policy",
                "default-src 'self'; frame-ancestors 'none'",
            ),
            ("Strict-Transport-Security", "max-age=63072000"),
            ("X-Content-Type-Options", "nosniff"),
        ];
        assert!(missing_security_headers(&side(&full)).is_empty());
        assert!(
            missing_security_headers(&side(&[("Content-Type", "application/json")])).is_empty()
        );
    }

    #[test]
    fn credentials_to_any_origin() {
        let request = [
            ("Origin", "https://evil.example"),
            ("Host", "api.example.com"),
        ];
        let reflected = [
            ("Access-Control-Allow-Origin", "https://evil.example"),
            ("Access-Control-Allow-Credentials", "true"),
        ];
        assert_eq!(
            cors(&side(&request), &side(&reflected)),
            Some("cors.reflected_origin_with_credentials")
        );
        let wildcard = [
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Credentials", "true"),
        ];
        assert_eq!(
            cors(&side(&request), &side(&wildcard)),
            Some("cors.wildcard_with_credentials")
        );
        let public = [("Access-Control-Allow-Origin", "*")];
        assert_eq!(cors(&side(&request), &side(&public)), None);
    }
}
