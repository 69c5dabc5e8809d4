use proptest::prelude::*;

use super::*;

const KEY: [u8; 16] = [7; 16];
const START: u64 = 1_700_000_000;

fn detector() -> BehaviorDetector {
    BehaviorDetector::new(&BehaviorConfig::default(), KEY).expect("the defaults are valid")
}

fn call<'a>(source: &'a str, path: &'a str, status: u16, time: u64) -> Call<'a> {
    Call {
        source,
        service: "shop",
        method: "GET",
        template: path,
        path,
        query: None,
        object_ids: &[],
        status: Some(status),
        account: None,
        time_unix_secs: time,
    }
}

/// Every finding of feeding `calls` in order.
fn feed<'a>(
    detector: &mut BehaviorDetector,
    calls: impl IntoIterator<Item = Call<'a>>,
) -> Vec<BehaviorThreat> {
    calls
        .into_iter()
        .flat_map(|call| detector.observe(&call))
        .collect()
}

#[test]
fn a_scanner_probing_missing_paths_is_reported_once_per_burst() {
    let mut detector = detector();
    let paths: Vec<String> = (0..200).map(|n| format!("/admin/{n}.php")).collect();
    let probe = |n: usize, time: u64| call("203.0.113.9", &paths[n], 404, time);
    let found = feed(
        &mut detector,
        (0..100).map(|n| probe(n, START + n as u64 / 4)),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    let threat = &found[0];
    assert_eq!(threat.kind, ThreatKind::Recon);
    assert_eq!(threat.rule, "recon.missed_paths");
    assert_eq!(threat.source, "203.0.113.9");
    assert_eq!(threat.count, 20);
    assert_eq!(
        threat.message,
        "20 distinct paths answered 404 or 405 in 4 s"
    );
    assert_eq!(threat.severity, Severity::Medium);
    // A new burst after a quiet period is reported again.
    let later = START + 1000;
    let found = feed(&mut detector, (100..200).map(|n| probe(n, later)));
    assert_eq!(found.len(), 1);
    assert_eq!(detector.stats().findings, 2);
}

#[test]
fn a_crawler_of_a_small_catalogue_is_not_recon() {
    let mut detector = detector();
    let pages: Vec<String> = (0..500).map(|n| format!("/products/{n}")).collect();
    // Every page once, a few gone.
    let found = feed(
        &mut detector,
        pages.iter().enumerate().map(|(n, page)| {
            let status = if n % 50 == 0 { 404 } else { 200 };
            call("crawler", page, status, START + n as u64 / 10)
        }),
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn missing_paths_spread_over_time_are_not_a_burst() {
    let mut detector = detector();
    let paths: Vec<String> = (0..100).map(|n| format!("/old/{n}")).collect();
    let found = feed(
        &mut detector,
        paths
            .iter()
            .enumerate()
            .map(|(n, path)| call("stale-client", path, 404, START + 10 * n as u64)),
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_parameter_miner_is_recon_and_a_stable_client_is_not() {
    let mut detector = detector();
    let queries: Vec<String> = (0..10)
        .map(|round| {
            (0..32)
                .map(|n| format!("p{round}_{n}=1"))
                .collect::<Vec<_>>()
                .join("&")
        })
        .collect();
    let found = feed(
        &mut detector,
        queries.iter().map(|query| Call {
            query: Some(query),
            ..call("miner", "/search", 200, START)
        }),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].rule, "recon.parameter_names");
    assert_eq!(found[0].count, 50);

    let queries: Vec<String> = (0..1000)
        .map(|page| format!("page={page}&size=20&sort=name&filter=open"))
        .collect();
    let found = feed(
        &mut detector,
        queries.iter().map(|query| Call {
            query: Some(query),
            ..call("app", "/search", 200, START)
        }),
    );
    assert!(found.is_empty(), "{found:?}");
}

fn user_call<'a>(source: &'a str, path: &'a str, status: u16, time: u64) -> Call<'a> {
    Call {
        template: "/users/{id}",
        ..call(source, path, status, time)
    }
}

#[test]
fn walking_consecutive_ids_is_bola_enumeration() {
    let mut detector = detector();
    let paths: Vec<String> = (1001..1100).map(|id| format!("/users/{id}")).collect();
    let found = feed(
        &mut detector,
        paths
            .iter()
            .map(|path| user_call("ns/scraper", path, 200, START)),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    let threat = &found[0];
    assert_eq!(threat.kind, ThreatKind::BolaEnumeration);
    assert_eq!(threat.rule, "bola.consecutive_ids");
    assert_eq!(threat.endpoint.as_deref(), Some("GET /users/{id}"));
    assert_eq!(threat.severity, Severity::High);
    assert_eq!(
        threat.message,
        "20 consecutive ids of GET /users/{id} in 0 s, 20 answered 2xx"
    );
    // Walking down counts too.
    let mut detector = self::detector();
    let found = feed(
        &mut detector,
        paths
            .iter()
            .rev()
            .map(|path| user_call("ns/scraper", path, 200, START)),
    );
    assert_eq!(found.len(), 1);
}

#[test]
fn many_distinct_ids_are_bola_enumeration_even_out_of_order() {
    let mut detector = detector();
    let paths: Vec<String> = (0..60u64)
        .map(|n| format!("/users/{:x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    let found = feed(
        &mut detector,
        paths
            .iter()
            .enumerate()
            .map(|(n, path)| user_call("range/office", path, 403, START + n as u64 / 2)),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].rule, "bola.distinct_ids");
    assert_eq!(found[0].count, 50);
    // Refused: an attempt, not a breach.
    assert_eq!(found[0].severity, Severity::Medium);
    assert_eq!(
        found[0].message,
        "50 distinct ids of GET /users/{id} in 24 s, 0 answered 2xx"
    );
}

#[test]
fn paging_through_owned_ids_at_a_low_rate_is_not_bola() {
    let mut detector = detector();
    let paths: Vec<String> = (1..300).map(|id| format!("/users/{id}")).collect();
    let found = feed(
        &mut detector,
        paths
            .iter()
            .enumerate()
            .map(|(n, path)| user_call("app", path, 200, START + 5 * n as u64)),
    );
    assert!(found.is_empty(), "{found:?}");
    // And a client rereading its few objects as fast as it likes.
    let found = feed(
        &mut detector,
        (0..2000).map(|n| user_call("app", &paths[n % 10], 200, START + 2000)),
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn given_object_ids_take_the_place_of_the_template() {
    let mut detector = detector();
    let ids: Vec<String> = (0..20).map(|n| (500 + n).to_string()).collect();
    let ids: Vec<[&str; 1]> = ids.iter().map(|id| [id.as_str()]).collect();
    let found = feed(
        &mut detector,
        ids.iter().map(|id| Call {
            template: "/orders",
            path: "/orders",
            object_ids: id,
            ..call("svc", "/orders", 200, START)
        }),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].endpoint.as_deref(), Some("GET /orders"));
}

fn login<'a>(source: &'a str, account: &'a str, status: u16, time: u64) -> Call<'a> {
    Call {
        method: "POST",
        account: Some(account),
        ..call(source, "/login", status, time)
    }
}

#[test]
fn failed_logins_for_many_accounts_are_credential_stuffing() {
    let mut detector = detector();
    let accounts: Vec<String> = (0..30).map(|n| format!("user{n}@example.com")).collect();
    let mut calls = vec![login("198.51.100.7", &accounts[0], 401, START)];
    // One of the leaked passwords works.
    calls.push(login("198.51.100.7", &accounts[0], 200, START + 1));
    calls.extend(
        accounts[1..]
            .iter()
            .enumerate()
            .map(|(n, account)| login("198.51.100.7", account, 401, START + 2 + n as u64)),
    );
    let found = feed(&mut detector, calls);
    assert_eq!(found.len(), 1, "{found:?}");
    let threat = &found[0];
    assert_eq!(threat.kind, ThreatKind::CredentialStuffing);
    assert_eq!(threat.rule, "credential_stuffing.failed_accounts");
    assert_eq!(threat.severity, Severity::Critical);
    assert_eq!(
        threat.message,
        "failed logins for 10 distinct accounts in 10 s, 1 of them then logged in"
    );
}

#[test]
fn a_user_retrying_their_own_password_is_not_credential_stuffing() {
    let mut detector = detector();
    let found = feed(
        &mut detector,
        [
            login("10.0.0.5", "Alice@example.com", 401, START),
            login("10.0.0.5", "alice@example.com", 401, START + 5),
            login("10.0.0.5", "alice@example.com", 401, START + 12),
            login("10.0.0.5", "alice@example.com", 200, START + 20),
        ],
    );
    assert!(found.is_empty(), "{found:?}");
    // Nor is an expired token refused over and over: no account is named.
    let found = feed(
        &mut detector,
        (0..500).map(|n| call("10.0.0.5", "/me", 401, START + n)),
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn many_failures_for_one_account_are_guessing() {
    let mut detector = detector();
    let found = feed(
        &mut detector,
        (0..40).map(|n| login("198.51.100.8", "root", 403, START + n)),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].rule, "credential_stuffing.failures_per_account");
    assert_eq!(found[0].count, 20);
}

#[test]
fn sources_and_endpoints_are_bounded_and_their_loss_counted() {
    let config = BehaviorConfig {
        max_sources: 2,
        ..BehaviorConfig::default()
    };
    let mut detector = BehaviorDetector::new(&config, KEY).expect("valid");
    for source in ["a", "b", "c"] {
        detector.observe(&call(source, "/missing", 404, START));
    }
    let stats = detector.stats();
    assert_eq!(stats.sources, 2);
    assert_eq!(stats.items, 2);
    assert_eq!(stats.sources_evicted, 1);
    // A source long idle holds nothing that counts: forgetting it is no loss.
    detector.observe(&call("d", "/missing", 404, START + 10_000));
    assert_eq!(detector.stats().sources_evicted, 1);

    let mut detector = self::detector();
    let templates: Vec<String> = (0..5).map(|n| format!("/kind{n}/{{id}}")).collect();
    let paths: Vec<String> = (0..5).map(|n| format!("/kind{n}/1")).collect();
    for (template, path) in templates.iter().zip(&paths) {
        detector.observe(&Call {
            template,
            ..call("walker", path, 200, START)
        });
    }
    let stats = detector.stats();
    assert_eq!(stats.endpoints_evicted, 1);
    assert_eq!(stats.items, 4);
}

#[test]
fn time_running_backwards_is_clamped() {
    let mut detector = detector();
    let paths: Vec<String> = (0..20).map(|n| format!("/x/{n}")).collect();
    let found = feed(
        &mut detector,
        paths
            .iter()
            .enumerate()
            .map(|(n, path)| call("s", path, 404, START - n as u64)),
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].span_secs, 0);
}

#[test]
fn source_labels_are_cut() {
    let mut detector = detector();
    let long = "é".repeat(200);
    let paths: Vec<String> = (0..20).map(|n| format!("/x/{n}")).collect();
    let found = feed(
        &mut detector,
        paths.iter().map(|path| call(&long, path, 404, START)),
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].source.len(), MAX_SOURCE_BYTES);
}

#[test]
fn config_reads_partially_and_rejects_what_would_not_bound_memory() {
    let config: BehaviorConfig =
        serde_json::from_str(r#"{"recon": {"missedPaths": 5}, "maxSources": 10}"#)
            .expect("a partial config reads");
    assert_eq!(config.recon.missed_paths, 5);
    assert_eq!(config.recon.window_secs, 60);
    assert_eq!(config.bola, BolaConfig::default());
    assert!(serde_json::from_str::<BehaviorConfig>(r#"{"recon": {"missed": 5}}"#).is_err());
    let huge = BehaviorConfig {
        bola: BolaConfig {
            distinct_ids: 1_000_000,
            ..BolaConfig::default()
        },
        ..BehaviorConfig::default()
    };
    let error = BehaviorDetector::new(&huge, KEY).err();
    assert_eq!(
        error.map(|error| error.to_string()).as_deref(),
        Some("bola.distinctIds is 1000000; it must be from 2 to 1024")
    );
    let none = BehaviorConfig {
        max_sources: 0,
        ..BehaviorConfig::default()
    };
    assert!(BehaviorDetector::new(&none, KEY).is_err());
    assert_eq!(BehaviorConfig::default().max_items_per_source(), 280);
}

#[derive(Debug, Clone)]
struct Arbitrary {
    source: u8,
    template: String,
    path: String,
    query: Option<String>,
    ids: Vec<String>,
    status: Option<u16>,
    account: Option<String>,
    time: u64,
}

fn arbitrary_call() -> impl Strategy<Value = Arbitrary> {
    (
        any::<u8>(),
        prop_oneof![Just("/u/{id}/o/{id}".to_owned()), ".{0,24}"],
        prop_oneof!["/u/[0-9]{1,4}/o/[0-9]{1,3}", ".{0,24}"],
        proptest::option::of(".{0,40}"),
        proptest::collection::vec(".{0,6}", 0..3),
        proptest::option::of(prop_oneof![
            Just(200u16),
            Just(401),
            Just(403),
            Just(404),
            any::<u16>()
        ]),
        proptest::option::of("[a-e]{0,2}"),
        prop_oneof![START..START + 600, any::<u64>()],
    )
        .prop_map(
            |(source, template, path, query, ids, status, account, time)| Arbitrary {
                source,
                template,
                path,
                query,
                ids,
                status,
                account,
                time,
            },
        )
}

proptest! {
    /// With small bounds that any input can reach: no panic, at most one finding per kind and
    /// call, and state within its bounds after every call.
    #[test]
    fn arbitrary_calls_stay_within_bounds(calls in proptest::collection::vec(arbitrary_call(), 0..300)) {
        let config = BehaviorConfig {
            max_sources: 3,
            rearm_after_quiet_secs: 30,
            recon: ReconConfig { window_secs: 20, missed_paths: 4, parameter_names: 6 },
            bola: BolaConfig { window_secs: 20, distinct_ids: 5, consecutive_ids: 3, endpoints_per_source: 2 },
            credential_stuffing: CredentialStuffingConfig { window_secs: 20, failed_accounts: 3, failures_per_account: 4 },
        };
        let mut detector = BehaviorDetector::new(&config, KEY).expect("valid");
        let bound = config.max_sources * config.max_items_per_source();
        for arbitrary in &calls {
            let source = format!("source{}", arbitrary.source % 5);
            let ids: Vec<&str> = arbitrary.ids.iter().map(String::as_str).collect();
            let found = detector.observe(&Call {
                source: &source,
                service: "s",
                method: "GET",
                template: &arbitrary.template,
                path: &arbitrary.path,
                query: arbitrary.query.as_deref(),
                object_ids: &ids,
                status: arbitrary.status,
                account: arbitrary.account.as_deref(),
                time_unix_secs: arbitrary.time,
            });
            prop_assert!(found.len() <= 3);
            let stats = detector.stats();
            prop_assert!(stats.sources <= config.max_sources);
            prop_assert!(stats.items <= bound, "{} items", stats.items);
        }
    }
}

#[test]
fn a_call_from_an_exchange_carries_its_caller_request_line_status_and_time() {
    use intelligence::exchange::Side;
    let headers = [("Content-Type", "application/json")];
    let body = br#"{"username": "mallory", "password": "123456"}"#;
    let caller = intelligence::Caller::peer("203.0.113.50");
    let exchange = Exchange {
        method: "POST",
        path: "/api/login",
        query: Some("next=%2F"),
        status: Some(401),
        request: Side {
            headers: &headers,
            body,
            body_complete: true,
            seen: true,
        },
        response: Side::default(),
        caller: &caller,
        auth: intelligence::auth::AuthScheme::None,
        time_unix_secs: START,
        latency_us: None,
    };
    let account = login_account(&exchange.request);
    let call = Call {
        account: account.as_deref(),
        ..Call::from_exchange(&exchange, "auth", "/api/login")
    };
    assert_eq!(call.source, "203.0.113.50");
    assert_eq!(
        (call.method, call.path, call.query),
        ("POST", "/api/login", Some("next=%2F"))
    );
    assert_eq!((call.status, call.time_unix_secs), (Some(401), START));
    assert_eq!(call.account, Some("mallory"));
}
