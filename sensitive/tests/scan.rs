//! The scanner over whole calls: sources, locations, custom detectors, masking, JWTs, and the
//! properties that hold on any bytes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use intelligence::Exchange;
use intelligence::auth::AuthScheme;
use intelligence::exchange::Side;
use proptest::prelude::*;
use sensitive::{Config, Detection, Direction, HashKey, Location, Scanner};

static CALLER: std::sync::LazyLock<intelligence::Caller> =
    std::sync::LazyLock::new(|| intelligence::Caller::peer("test"));

fn scanner(config: serde_json::Value) -> Scanner {
    let config: Config = serde_json::from_value(config).expect("config parses");
    Scanner::new(&config, HashKey::new([42; 32])).expect("config is valid")
}

fn side<'a>(headers: &'a [(&'a str, &'a str)], body: &'a [u8]) -> Side<'a> {
    Side {
        headers,
        body,
        body_complete: true,
        seen: true,
    }
}

fn exchange<'a>(query: Option<&'a str>, request: Side<'a>, response: Side<'a>) -> Exchange<'a> {
    Exchange {
        method: "POST",
        path: "/orders",
        query,
        status: Some(200),
        request,
        response,
        caller: &CALLER,
        auth: AuthScheme::None,
        time_unix_secs: 2_000_000_000,
        latency_us: None,
    }
}

/// Kinds the tests' configured detectors add to the built-in ones.
const CONFIGURED_KINDS: [&str; 4] = [
    "data.customer_id",
    "data.diagnosis",
    "data.account",
    "data.c",
];

fn found(detections: &[Detection]) -> Vec<(String, Location)> {
    for detection in detections {
        assert!(
            sensitive::KINDS.contains(&&*detection.kind)
                || CONFIGURED_KINDS.contains(&&*detection.kind),
            "{} is missing from sensitive::KINDS",
            detection.kind
        );
    }
    detections
        .iter()
        .map(|d| (d.kind.to_string(), d.location.clone()))
        .collect()
}

fn json_at(pointer: &str) -> Location {
    Location::Json {
        pointer: pointer.into(),
    }
}

#[test]
fn json_bodies_are_walked_with_pointers() {
    let body = br#"{"customer":{"email":"ann@example.com","card":{"number":"4111 1111 1111 1111"},"dob":"1984-02-29"},"orderId":"1234567812345670"}"#;
    let json = [("content-type", "application/json")];
    let call = exchange(None, side(&json, body), Side::default());
    assert_eq!(
        found(&scanner(serde_json::json!({})).scan(&call, "orders")),
        [
            ("data.payment_card".into(), json_at("/customer/card/number")),
            ("data.date_of_birth".into(), json_at("/customer/dob")),
            ("data.email".into(), json_at("/customer/email")),
        ]
    );
}

#[test]
fn headers_query_forms_and_text_are_sources() {
    let headers = [("x-api-key", "k-8f3a9c2b"), ("authorization", "[redacted]")];
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let text = [("content-type", "text/plain")];
    let call = exchange(
        Some("q=shoes&access_token=abc123&email=bob%40example.com"),
        side(&headers, b""),
        side(&text, b"upstream 10.1.2.3 said hi"),
    );
    let detections = scanner(serde_json::json!({})).scan(&call, "orders");
    assert_eq!(
        found(&detections),
        [
            (
                "auth.credentials_in_url".into(),
                Location::Query {
                    param: "access_token".into()
                }
            ),
            (
                "data.email".into(),
                Location::Query {
                    param: "email".into()
                }
            ),
            (
                "data.secret".into(),
                Location::Header {
                    name: "x-api-key".into()
                }
            ),
            ("data.internal_ip".into(), Location::Text { offset: 9 }),
        ]
    );
    assert_eq!(detections[3].direction, Direction::Response);
    let call = exchange(
        None,
        side(&form, b"user=bob&password=hunter2"),
        Side::default(),
    );
    assert_eq!(
        found(&scanner(serde_json::json!({})).scan(&call, "orders")),
        [(
            "data.password".into(),
            Location::Form {
                field: "password".into()
            }
        )]
    );
}

#[test]
fn custom_detectors_teach_new_kinds() {
    let scanner = scanner(serde_json::json!({"detectors": [
        {"name": "customer_id", "class": "business", "severity": "medium", "regex": "CUST-[0-9]{6}"},
        {"name": "diagnosis", "class": "health", "severity": "high", "fields": ["icd10"]},
        {"name": "account", "class": "financial", "severity": "high", "regex": "\\b[0-9]{10}\\b", "keywords": ["acct"], "window": 16, "validator": "luhn"},
    ]}));
    let body =
        br#"{"ref":"CUST-123456","icd10":"E11.9","note":"acct 1234567897, other 1234567897"}"#;
    let json = [("content-type", "application/json")];
    let call = exchange(None, side(&json, body), Side::default());
    let kinds: Vec<String> = scanner
        .scan(&call, "orders")
        .iter()
        .map(|d| d.kind.to_string())
        .collect();
    assert_eq!(
        kinds,
        ["data.diagnosis", "data.account", "data.customer_id"]
    );
}

#[test]
fn declared_masks_that_do_not_mask_are_reported() {
    let scanner =
        scanner(serde_json::json!({"maskedFields": [{"field": "/cards/*/pan", "style": "last4"}]}));
    let body = br#"{"cards":[{"pan":"************1111"},{"pan":"5555555555554444"}]}"#;
    let json = [("content-type", "application/json")];
    let call = exchange(None, Side::default(), side(&json, body));
    let detections = scanner.scan(&call, "cards");
    assert_eq!(
        found(&detections),
        [
            ("data.payment_card".into(), json_at("/cards/1/pan")),
            ("data.masking_ineffective".into(), json_at("/cards/1/pan"))
        ]
    );
    assert_eq!(
        detections[1].evidence.class,
        sensitive::DataClass::Financial
    );
}

fn token(header: &str, claims: &str) -> String {
    format!(
        "{}.{}.sig",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

#[test]
fn jwts_are_checked_wherever_they_are() {
    let presented = token(
        r#"{"alg":"RS256"}"#,
        r#"{"exp":1000,"email":"ann@example.com","scope":"admin","aud":"billing"}"#,
    );
    let bearer = format!("Bearer {presented}");
    let headers = [("authorization", bearer.as_str())];
    let call = exchange(None, side(&headers, b""), Side::default());
    let mut kinds: Vec<String> = scanner(serde_json::json!({}))
        .scan(&call, "orders")
        .iter()
        .map(|d| d.kind.to_string())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "auth.jwt_expired_accepted",
            "auth.jwt_pii_claims",
            "auth.token_overbroad",
            "auth.token_overbroad",
            "data.jwt"
        ]
    );
    let query = format!("jwt={}", token(r#"{"alg":"none"}"#, "{}"));
    let call = exchange(Some(&query), Side::default(), Side::default());
    let kinds: Vec<String> = scanner(serde_json::json!({}))
        .scan(&call, "orders")
        .iter()
        .map(|d| d.kind.to_string())
        .collect();
    assert_eq!(
        kinds,
        ["data.jwt", "auth.jwt_alg_none", "auth.credentials_in_url"]
    );
}

#[test]
fn userinfo_in_an_absolute_target_is_a_credential_in_the_url() {
    let mut call = exchange(None, Side::default(), Side::default());
    call.path = "http://admin:s3cret@internal/orders";
    assert_eq!(
        found(&scanner(serde_json::json!({})).scan(&call, "orders")),
        [("auth.credentials_in_url".into(), Location::Path)]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_bytes_scan_without_panicking_and_within_bounds(body in proptest::collection::vec(any::<u8>(), 0..4096), query in ".{0,200}") {
        let scanner = scanner(serde_json::json!({"detectors": [{"name": "c", "class": "pii", "severity": "low", "regex": "[a-z]+", "fields": ["x"]}]}));
        for media in ["application/json", "application/x-www-form-urlencoded", "text/plain"] {
            let headers = [("content-type", media)];
            let call = exchange(Some(&query), side(&headers, &body), side(&headers, &body));
            prop_assert!(scanner.scan(&call, "svc").len() <= sensitive::scan::MAX_DETECTIONS);
        }
    }

    #[test]
    fn shaped_text_scans_without_panicking(text in "([0-9 .@:/+=-]|[A-Za-z]|eyJ|AKIA|ghp_|xoxb-|-----BEGIN ){0,300}") {
        let scanner = scanner(serde_json::json!({}));
        let headers = [("content-type", "text/plain")];
        let call = exchange(None, side(&headers, text.as_bytes()), side(&headers, text.as_bytes()));
        prop_assert!(scanner.scan(&call, "svc").len() <= sensitive::scan::MAX_DETECTIONS);
    }

    #[test]
    fn evidence_never_carries_the_value(secret in "[G-Zg-z]{8,24}", digits in "[0-9]{3}") {
        let card = format!("4111 1111 1111 {digits}1");
        let body = format!(r#"{{"password":"{secret}","card":"{card}","email":"{secret}@example.com"}}"#);
        let json = [("content-type", "application/json")];
        let call = exchange(None, side(&json, body.as_bytes()), Side::default());
        for detection in scanner(serde_json::json!({})).scan(&call, "svc") {
            let shown = serde_json::to_string(&detection).expect("serializes");
            prop_assert!(!shown.contains(&secret), "{shown}");
            prop_assert!(!shown.contains(&card) && !shown.contains(&card.replace(' ', "")), "{shown}");
            prop_assert!(detection.evidence.shown.chars().count() <= sensitive::Evidence::MAX_SHOWN);
        }
    }
}

#[test]
fn presented_tokens_report_their_problems_but_not_themselves() {
    let encode = |json: &str| URL_SAFE_NO_PAD.encode(json);
    let unsigned = format!(
        "{}.{}.",
        encode(r#"{"alg":"none"}"#),
        encode(r#"{"sub":"u1","email":"ann@example.com","exp":1000}"#)
    );
    let bearer = format!("Bearer {unsigned}");
    let cookie = format!("theme=dark; session={unsigned}");
    let call = exchange(None, Side::default(), Side::default());
    let scanner = scanner(serde_json::json!({}));
    for (name, value) in [
        ("Authorization", bearer.as_str()),
        ("Cookie", cookie.as_str()),
    ] {
        let mut kinds: Vec<String> = scanner
            .presented_tokens(&[(name, value)], &call, "orders")
            .iter()
            .map(|detection| detection.kind.to_string())
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                "auth.jwt_alg_none",
                "auth.jwt_expired_accepted",
                "auth.jwt_pii_claims"
            ],
            "{name}"
        );
    }
    let opaque = scanner.presented_tokens(&[("Authorization", "Bearer 8f1c2d")], &call, "orders");
    assert!(opaque.is_empty(), "{opaque:?}");
    let basic =
        scanner.presented_tokens(&[("Authorization", "Basic dXNlcjpwYXNz")], &call, "orders");
    assert!(basic.is_empty(), "{basic:?}");
}
