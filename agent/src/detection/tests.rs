use std::path::PathBuf;

use base64::Engine as _;
use intelligence::{auth::AuthScheme, exchange::Side};

use super::*;

static CALLER: std::sync::LazyLock<intelligence::Caller> =
    std::sync::LazyLock::new(|| intelligence::Caller::peer("shop/web"));

fn config(text: &str) -> Result<DetectionConfig, PolicyError> {
    parse(text, &PathBuf::from("detection.yaml"))
}

fn detectors(text: &str) -> Detectors {
    Detectors::new(
        Arc::new(config(text).expect("config is valid")),
        HashKey::new([9; 32]),
        1 << 20,
    )
}

const JSON: [(&str, &str); 1] = [("content-type", "application/json")];

fn exchange<'a>(
    path: &'a str,
    query: Option<&'a str>,
    response_body: &'a [u8],
    time: u64,
) -> Exchange<'a> {
    Exchange {
        method: "GET",
        path,
        query,
        status: Some(200),
        request: Side {
            seen: true,
            body_complete: true,
            ..Side::default()
        },
        response: Side {
            headers: &JSON,
            body: response_body,
            body_complete: true,
            seen: true,
        },
        caller: &CALLER,
        auth: AuthScheme::None,
        time_unix_secs: time,
        latency_us: Some(100),
    }
}

fn context<'a>(
    exchange: &'a Exchange<'a>,
    credentials: &'a [(&'a str, &'a str)],
) -> CallContext<'a> {
    CallContext {
        exchange,
        service: "shop/orders",
        endpoint: "/orders",
        credentials,
        masked: &[],
        crosses_node: true,
        encrypted: false,
    }
}

fn kinds(findings: &[Finding]) -> Vec<(String, Mode)> {
    let mut kinds: Vec<(String, Mode)> = findings
        .iter()
        .map(|finding| (finding.kind.to_string(), finding.mode))
        .collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    kinds
}

#[test]
fn the_most_specific_mode_wins_and_only_hostile_requests_block() {
    let config = config(
        "modes:\n  '*': block\n  data.*: off\n  data.payment_card: detect\n  threat.scanner: detect\n",
    )
    .expect("valid");
    assert_eq!(config.mode_of("threat.sqli"), Mode::Block);
    assert_eq!(config.mode_of("threat.scanner"), Mode::Detect);
    assert_eq!(config.mode_of("auth.jwt_alg_none"), Mode::Block);
    assert_eq!(config.mode_of("data.email"), Mode::Off);
    assert_eq!(config.mode_of("data.payment_card"), Mode::Detect);
    assert_eq!(
        config.mode_of("leak.stack_trace"),
        Mode::Detect,
        "a server's leak is not the client's attack"
    );
    assert_eq!(
        DetectionConfig::default().mode_of("threat.xss"),
        Mode::Detect
    );
}

#[test]
fn bad_files_are_refused_with_line_field_and_the_right_form() {
    let unknown = config("blockFor: 5m\nmodes:\n  threat.sqly: block\n").unwrap_err();
    assert_eq!(unknown.field.as_deref(), Some("modes.threat.sqly"));
    assert_eq!(unknown.line, Some(3));
    assert!(unknown.message.contains("threat.sqli"), "{unknown}");

    let block_data = config("modes:\n  data.email: block\n").unwrap_err();
    assert_eq!(block_data.field.as_deref(), Some("modes.data.email"));
    assert!(block_data.message.contains("detect"), "{block_data}");

    let family = config("modes:\n  thr*: off\n").unwrap_err();
    assert!(family.message.contains("threat.*"), "{family}");

    let duration = config("repeatAfter: soon\n").unwrap_err();
    assert_eq!(duration.field.as_deref(), Some("repeatAfter"));
    assert_eq!(duration.line, Some(1));

    let detector = config(
        "sensitive:\n  detectors:\n    - {name: Bad Name, class: pii, severity: low, regex: x}\n",
    )
    .unwrap_err();
    assert_eq!(detector.field.as_deref(), Some("sensitive"));
    assert!(detector.message.contains("detectors[0]"), "{detector}");

    let typo = config("mode:\n  threat.sqli: off\n").unwrap_err();
    assert_eq!(typo.line, Some(1), "{typo}");

    let custom = config(
        "sensitive:\n  detectors:\n    - {name: customer_id, class: business, severity: medium, regex: 'CUST-[0-9]{6}'}\nmodes:\n  data.customer_id: off\nseverities:\n  threat.sqli: critical\n",
    )
    .expect("a configured detector's kind can be set");
    assert_eq!(custom.mode_of("data.customer_id"), Mode::Off);
    assert!(config("").is_ok(), "an empty file is the defaults");
}

#[test]
fn attacks_are_reported_per_call_with_their_rule() {
    let mut detectors =
        detectors("modes:\n  threat.sqli: block\nseverities:\n  threat.sqli: critical\n");
    for time in [1, 2] {
        let call = exchange(
            "/orders",
            Some("id=1%27%20UNION%20SELECT%20password%20FROM%20users--"),
            b"[]",
            time,
        );
        let findings = detectors.judge(&context(&call, &[])).findings;
        let sqli = findings
            .iter()
            .find(|finding| finding.kind == "threat.sqli")
            .expect("SQL injection found");
        assert_eq!(sqli.mode, Mode::Block);
        assert_eq!(sqli.severity, Severity::Critical);
        assert!(!sqli.rule.is_empty());
        assert_eq!(sqli.endpoint, "/orders");
        assert!(sqli.evidence.starts_with("query.id"), "{}", sqli.evidence);
        assert!(
            !sqli.evidence.contains("password FROM"),
            "evidence is masked: {}",
            sqli.evidence
        );
    }
}

#[test]
fn data_in_responses_is_one_finding_per_kind_said_again_only_after_repeat_after() {
    let mut detectors = detectors("repeatAfter: 1h\nmodes:\n  data.phone: off\n");
    let body = br#"[{"email":"ann@example.com","phone":"+14155550132"},{"email":"bob@example.org","phone":"+14155550133"}]"#;
    let first = exchange("/customers", None, body, 100);
    let findings = detectors.judge(&context(&first, &[])).findings;
    assert_eq!(
        kinds(&findings),
        [("data.email".to_owned(), Mode::Detect)],
        "phone numbers are off; an unauthenticated call sends no credentials"
    );
    let email = &findings[0];
    assert!(
        email.message.starts_with("2 pii values in the response"),
        "{}",
        email.message
    );
    assert!(
        email.evidence.contains("json /0/email"),
        "{}",
        email.evidence
    );
    assert!(!email.evidence.contains("ann@"), "{}", email.evidence);

    let soon = exchange("/customers", None, body, 200);
    assert!(detectors.judge(&context(&soon, &[])).findings.is_empty());
    assert_eq!(detectors.stats().repeats_suppressed, 1);
    let later = exchange("/customers", None, body, 100 + 3600);
    assert_eq!(
        kinds(&detectors.judge(&context(&later, &[])).findings).len(),
        1
    );
}

#[test]
fn presented_tokens_and_clear_credentials_are_judged_from_the_unredacted_headers() {
    let mut detectors = detectors("");
    let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let token = format!(
        "Bearer {}.{}.",
        encode(r#"{"alg":"none"}"#),
        encode(r#"{"sub":"u1","exp":1000}"#)
    );
    let mut call = exchange("/orders", None, b"[]", 2_000_000_000);
    call.auth = AuthScheme::BearerJwt;
    let credentials = [("Authorization", token.as_str())];
    let findings = detectors.judge(&context(&call, &credentials)).findings;
    assert_eq!(
        kinds(&findings),
        [
            ("auth.jwt_alg_none".to_owned(), Mode::Detect),
            ("auth.jwt_expired_accepted".to_owned(), Mode::Detect),
            (PLAINTEXT_CREDENTIALS.to_owned(), Mode::Detect),
        ]
    );
    assert!(
        findings.iter().all(|finding| finding.kind != "data.jwt"),
        "a token where a token belongs is no leak"
    );
    let local = CallContext {
        crosses_node: false,
        ..context(&call, &credentials)
    };
    let mut detectors = super::Detectors::new(
        Arc::new(DetectionConfig::default()),
        HashKey::new([9; 32]),
        1 << 20,
    );
    assert!(
        detectors
            .judge(&local)
            .findings
            .iter()
            .all(|finding| finding.kind != PLAINTEXT_CREDENTIALS),
        "credentials between two processes of this node never crossed a wire"
    );
}

#[test]
fn callers_are_named_at_four_levels_as_clear_as_the_file_allows() {
    let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let token = format!(
        "Bearer {}.{}.sig",
        encode(r#"{"alg":"RS256"}"#),
        encode(r#"{"sub":"user-42","tenant":"globex","exp":9999999999}"#)
    );
    let client = |credentials| ClientFacts {
        peer: "range/partners",
        range_customer: None,
        user_agent: Some("python-requests/2.31.0"),
        credentials,
    };
    let hashed = detectors("");
    let bearer = [("Authorization", token.as_str())];
    let caller = hashed.caller(&client(&bearer));
    assert_eq!(caller.peer, "range/partners");
    assert_eq!(caller.application.as_deref(), Some("python-requests"));
    let key = HashKey::new([9; 32]);
    assert_eq!(caller.customer, Some(format!("#{}", key.digest("globex"))));
    assert_eq!(caller.user, Some(format!("#{}", key.digest("user-42"))));
    assert_eq!(caller.api_key, None);

    let clear = detectors("callers:\n  clearText: [customer, user]\n  customerClaims: [org]\n");
    let caller = clear.caller(&client(&bearer));
    assert_eq!(
        caller.customer, None,
        "only the org claim names customers now"
    );
    assert_eq!(caller.user.as_deref(), Some("user-42"));

    // SHA-256 of "k-123".
    let keyed = detectors(
        "callers:\n  apiKeys:\n    - {sha256: 3605A9E4358DA4302F8ACEA41F0F52CEF85D0E3F727C7B020FC7305AEC8D56B4, customer: Initech, application: billing-sync}\n",
    );
    let api_key = [("X-Api-Key", "k-123")];
    let caller = keyed.caller(&client(&api_key));
    assert_eq!(caller.api_key, Some(format!("#{}", key.digest("k-123"))));
    assert_eq!(caller.customer.as_deref(), Some("Initech"));
    assert_eq!(caller.application.as_deref(), Some("billing-sync"));
    let known = keyed.caller(&ClientFacts {
        credentials: &[("X-Api-Key", "k-456")],
        ..client(&api_key)
    });
    assert_eq!(known.customer, None, "an unlisted key names no customer");

    let basic = [("Authorization", "Basic YWxpY2U6czNjcmV0")];
    let caller = clear.caller(&ClientFacts {
        range_customer: Some("Acme Corp"),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"),
        ..client(&basic)
    });
    assert_eq!(
        caller.customer.as_deref(),
        Some("Acme Corp"),
        "a customer range wins"
    );
    assert_eq!(caller.user.as_deref(), Some("alice"));
    assert_eq!(caller.application.as_deref(), Some("browser"));
}

#[test]
fn api_keys_are_listed_by_their_sha256() {
    let bad =
        config("callers:\n  apiKeys:\n    - {sha256: k-123, customer: Initech}\n").unwrap_err();
    assert_eq!(bad.field.as_deref(), Some("callers.apiKeys[0].sha256"));
    assert_eq!(bad.line, Some(3));
    assert!(bad.message.contains("sha256sum"), "{bad}");
}

#[test]
fn bursts_over_many_calls_are_findings_and_survive_a_reload() {
    let mut detectors = detectors("behavior:\n  bola: {consecutiveIds: 5, distinctIds: 50}\n");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let mut kinds_seen = Vec::new();
    // Failed logins for ten different accounts from one source.
    for (index, time) in (1_000..1_010).enumerate() {
        let body = format!("username=user{index}&password=guess");
        let mut call = exchange("/login", None, b"", time);
        call.method = "POST";
        call.status = Some(401);
        call.request = Side {
            headers: &form,
            body: body.as_bytes(),
            body_complete: true,
            seen: true,
        };
        let findings = detectors.judge(&context(&call, &[])).findings;
        kinds_seen.extend(
            findings
                .into_iter()
                .map(|finding| finding.kind.to_string())
                .filter(|kind| kind.starts_with("threat.")),
        );
    }
    assert_eq!(kinds_seen, ["threat.credential_stuffing"]);

    // An edit of another section keeps the bursts under way.
    let same_thresholds = "behavior:\n  bola: {consecutiveIds: 5, distinctIds: 50}\nseverities:\n  threat.sqli: critical\n";
    let paths: Vec<String> = (1..=5).map(|id| format!("/orders/{}", 7000 + id)).collect();
    let mut findings = Vec::new();
    for (step, path) in paths.iter().enumerate() {
        if step == 3 {
            detectors.reconfigure(Arc::new(config(same_thresholds).expect("valid")));
        }
        let call = exchange(path, None, b"{}", 2_000 + step as u64);
        findings.extend(
            detectors
                .judge(&CallContext {
                    endpoint: "/orders/{id}",
                    ..context(&call, &[])
                })
                .findings,
        );
    }
    let bola: Vec<&Finding> = findings
        .iter()
        .filter(|finding| finding.kind == "threat.bola_enumeration")
        .collect();
    assert_eq!(bola.len(), 1, "{findings:?}");
    assert_eq!(bola[0].endpoint, "/orders/{id}");
    assert!(bola[0].message.contains('5'), "{}", bola[0].message);
    assert_eq!(detectors.behavior_stats().sources_evicted, 0);
}

#[test]
fn behavior_thresholds_out_of_range_are_refused_with_their_field() {
    let error = config("behavior:\n  bola:\n    distinctIds: 1000000\n").unwrap_err();
    assert_eq!(error.field.as_deref(), Some("behavior.bola.distinctIds"));
    assert_eq!(error.line, Some(3));
    assert!(error.message.contains("2 to 1024"), "{error}");
}

#[test]
fn bodies_past_the_second_s_budget_are_counted_not_read() {
    let body = br#"[{"email":"ann@example.com"},{"email":"bob@example.org"}]"#;
    let mut detectors = Detectors::new(
        Arc::new(config("").expect("valid")),
        HashKey::new([9; 32]),
        2 * body.len() as u64,
    );
    let mut judge = |query, time| {
        let call = exchange("/orders", query, body, time);
        let findings = kinds(&detectors.judge(&context(&call, &[])).findings);
        (findings, detectors.stats().bodies_unjudged)
    };
    assert_eq!(
        judge(None, 10),
        (vec![("data.email".to_owned(), Mode::Detect)], 0)
    );
    assert_eq!(judge(None, 10), (vec![], 0), "read, and already said");
    // The third body of the second does not fit: its URL is still judged.
    assert_eq!(
        judge(Some("id=1%27%20OR%20%271%27%3D%271"), 10),
        (vec![("threat.sqli".to_owned(), Mode::Detect)], 1)
    );
    assert_eq!(judge(None, 11), (vec![], 1), "a new second, a new budget");
    assert_eq!(detectors.stats().body_bytes_unjudged, body.len() as u64);
}
