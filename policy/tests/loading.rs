//! Policy files: the documented example loads, and every kind of mistake is reported with file,
//! line and field.

use std::path::{Path, PathBuf};

use policy::{Action, Policy, PolicyError, Protocol, Selector, parse};

const EXAMPLE: &str = r#"
identities:                      # named address sets
  frontend: { cidrs: ["198.18.1.0/24"] }
  api:      { cidrs: ["198.18.2.10/32", "fd00:198:18:2::10/128"] }
  db:       { cidrs: ["198.18.3.10/32"] }
blocklist:
  cidrs: ["198.19.66.0/24"]
  files: ["blocklist.txt"]
rules:
  - name: frontend-not-to-db
    action: deny
    from: frontend
    to: db
    ports: [5432]
    protocol: tcp
isolate: [db]
rateLimits:
  - name: api-flood
    to: api
    perSource: { packetsPerSecond: 1000, burst: 200 }
"#;

const BLOCKLIST: &str =
    "# known scanners\n198.19.77.0/24\n198.19.88.9   # one host\n\nfd00:198:19::/48\n";

fn origin() -> PathBuf {
    PathBuf::from("/etc/moat/policy.yaml")
}

fn reader(path: &Path) -> std::io::Result<String> {
    if path == Path::new("/etc/moat/blocklist.txt") {
        Ok(BLOCKLIST.to_owned())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory",
        ))
    }
}

fn load(text: &str) -> Result<Policy, PolicyError> {
    parse(text, &origin(), &reader)
}

fn error_of(text: &str) -> String {
    load(text).expect_err("the policy is invalid").to_string()
}

#[test]
fn the_documented_example_loads() {
    let policy = load(EXAMPLE).expect("example is valid");
    let names: Vec<&str> = policy
        .identities
        .iter()
        .map(|identity| identity.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["api", "db", "frontend"],
        "identities are sorted by name"
    );
    assert!(policy.identities[1].isolated, "db is isolated");
    assert!(!policy.identities[0].isolated);
    let blocklist: Vec<String> = policy.blocklist.iter().map(ToString::to_string).collect();
    assert_eq!(
        blocklist,
        [
            "198.19.66.0/24",
            "198.19.77.0/24",
            "198.19.88.9/32",
            "fd00:198:19::/48"
        ],
        "inline CIDRs and the file's entries, comments and blanks skipped"
    );
    let rule = &policy.rules[0];
    assert_eq!(rule.action, Action::Deny);
    assert_eq!(rule.from, Selector::Identity(2));
    assert_eq!(rule.to, Selector::Identity(1));
    assert_eq!(rule.protocol, Protocol::Tcp);
    assert_eq!(rule.ports, [5432]);
    assert_eq!(policy.rate_limits[0].to, Selector::Identity(0));
    assert_eq!(policy.rate_limits[0].packets_per_second, 1000);
}

#[test]
fn an_empty_file_allows_everything() {
    assert_eq!(load("").unwrap(), Policy::allow_all());
    assert_eq!(load("# nothing yet\n").unwrap(), Policy::allow_all());
}

#[test]
fn a_misspelt_action_names_line_field_and_choices() {
    let text = EXAMPLE.replace("action: deny", "action: dney");
    assert_eq!(
        error_of(&text),
        "/etc/moat/policy.yaml:11:13: rules[0].action: unknown variant `dney`, expected `allow` or `deny`"
    );
}

#[test]
fn an_unknown_key_is_an_error_not_ignored() {
    let text = EXAMPLE.replace("    protocol: tcp", "    protocl: tcp");
    let error = error_of(&text);
    assert!(error.starts_with("/etc/moat/policy.yaml:15:"), "{error}");
    assert!(error.contains("rules[0]"), "{error}");
    assert!(error.contains("unknown field `protocl`"), "{error}");
}

#[test]
fn an_undefined_identity_is_named_with_the_known_ones() {
    let text = EXAMPLE.replace("    to: db\n", "    to: dbb\n");
    assert_eq!(
        error_of(&text),
        "/etc/moat/policy.yaml:13:9: rules[0].to: no identity named \"dbb\"; known: api, db, frontend, world, any"
    );
}

#[test]
fn a_bad_cidr_says_what_would_be_right() {
    let text = EXAMPLE.replace("198.18.1.0/24", "198.18.1.5/24");
    assert_eq!(
        error_of(&text),
        "/etc/moat/policy.yaml:3:23: identities.frontend.cidrs[0]: \"198.18.1.5/24\" has host bits set; did you mean 198.18.1.0/24?"
    );
}

#[test]
fn a_bad_blocklist_line_names_its_file_and_line() {
    let policy = "blocklist: { files: [bad.txt] }\n";
    let error = parse(policy, &origin(), &|_| {
        Ok("198.19.1.0/24\n\n# ok\nnot-an-ip\n".to_owned())
    })
    .unwrap_err();
    assert_eq!(error.file, PathBuf::from("/etc/moat/bad.txt"));
    assert_eq!(error.line, Some(4));
    assert!(
        error
            .message
            .contains("\"not-an-ip\" is not an IP address or CIDR"),
        "{error}"
    );
}

#[test]
fn a_missing_blocklist_file_is_named() {
    let error = error_of("blocklist: { files: [missing.txt] }\n");
    assert!(
        error.starts_with(
            "/etc/moat/policy.yaml:1:22: blocklist.files[0]: cannot read /etc/moat/missing.txt"
        ),
        "{error}"
    );
}

#[test]
fn semantic_mistakes_are_each_reported_at_their_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "identities: { a: { cidrs: [198.18.0.0/24] }, b: { cidrs: [198.18.0.0/24] } }",
            "identities.b.cidrs[0]",
            "already in identity \"a\"",
        ),
        (
            "identities: { world: { cidrs: [198.18.0.0/24] } }",
            "identities.world",
            "reserved",
        ),
        (
            "identities: { a: { cidrs: [] } }",
            "identities.a.cidrs",
            "at least one CIDR",
        ),
        (
            "rules: [{ name: r, action: deny, from: any, to: any, protocol: icmp, ports: [1] }]",
            "rules[0].ports",
            "ICMP has no ports",
        ),
        (
            "rules: [{ name: r, action: deny, from: any, to: any, ports: [0] }]",
            "rules[0].ports[0]",
            "port 0",
        ),
        (
            "rules: [{ name: r, action: deny, from: any, to: any }, { name: r, action: allow, from: any, to: any }]",
            "rules[1].name",
            "already named \"r\"",
        ),
        ("isolate: [world]", "isolate[0]", "only named identities"),
        (
            "rateLimits: [{ name: x, to: any, perSource: { packetsPerSecond: 10, burst: 1 } }]",
            "rateLimits[0].to",
            "not any",
        ),
        (
            "rateLimits: [{ name: x, to: world, perSource: { packetsPerSecond: 0, burst: 1 } }]",
            "rateLimits[0].perSource.packetsPerSecond",
            "between 1 and",
        ),
        (
            "rateLimits: [{ name: x, to: world, perSource: { packetsPerSecond: 5, burst: 1 } }, { name: y, to: world, perSource: { packetsPerSecond: 5, burst: 1 } }]",
            "rateLimits[1].to",
            "already has a rate limit",
        ),
        (
            "rules: [{ name: r, action: deny, from: any, to: any, ports: [70000] }]",
            "rules[0].ports[0]",
            "invalid value",
        ),
    ];
    for (text, field, phrase) in cases {
        let error = load(text).expect_err(text);
        assert_eq!(error.field.as_deref(), Some(*field), "{text}\n{error}");
        assert_eq!(error.line, Some(1), "{text}\n{error}");
        assert!(
            error.to_string().contains(phrase),
            "{phrase:?} missing: {error}"
        );
    }
}

#[test]
fn malformed_yaml_is_reported_with_its_position() {
    let error = load("rules: [ { name: a\n").unwrap_err();
    assert!(error.line.is_some(), "{error}");
}

#[test]
fn too_many_rules_are_refused_with_the_limit() {
    let rules: String = (0..=4096)
        .map(|index| format!("  - {{ name: r{index}, action: deny, from: any, to: any }}\n"))
        .collect();
    let error = error_of(&format!("rules:\n{rules}"));
    assert!(error.contains("4097 rules; at most 4096"), "{error}");
}

proptest::proptest! {
    /// Arbitrary text never panics the loader: it yields a policy or an error with a location.
    #[test]
    fn arbitrary_text_is_parsed_or_refused_never_a_panic(text in ".{0,400}") {
        let _ = load(&text);
    }

    /// Text shaped like a policy, with arbitrary values in its fields, is parsed or refused.
    #[test]
    fn policy_shaped_text_with_arbitrary_values_is_parsed_or_refused(
        name in "[a-z*?.-]{0,12}",
        cidr in "[0-9a-f:./]{0,24}",
        port in proptest::num::i64::ANY,
        action in "[a-z]{0,6}",
    ) {
        let text = format!(
            "identities: {{ {name}: {{ cidrs: [\"{cidr}\"] }} }}\nrules: [{{ name: r, action: {action}, from: {name}, to: any, ports: [{port}] }}]\n"
        );
        if let Err(error) = load(&text) {
            proptest::prop_assert!(error.line.is_some() || error.field.is_some(), "{}", error);
        }
    }
}

const SELECTORS: &str = r#"
identities:
  frontend: { selector: { namespace: shop, matchLabels: { app: web } } }
  db:
    cidrs: ["198.18.3.10/32"]
    selector:
      namespace: shop
      matchExpressions: [{ key: app, operator: In, values: [db, db-replica] }]
  payments: { namespaceSelector: { matchLabels: { team: payments } } }
rules:
  - { name: web-not-to-db, action: deny, from: frontend, to: db, ports: [5432], protocol: tcp }
"#;

#[test]
fn identities_may_select_pods_by_labels_and_namespaces() {
    let policy = load(SELECTORS).expect("selectors are valid");
    assert!(policy.has_pod_selectors());
    let db = &policy.identities[0];
    assert_eq!(db.name, "db");
    let pods = db.pods.as_ref().expect("db selects pods");
    assert_eq!(pods.namespace.as_deref(), Some("shop"));
    assert_eq!(db.cidrs.len(), 1);
    let payments = policy.identities[2]
        .pods
        .as_ref()
        .expect("payments selects namespaces");
    assert!(payments.labels.is_none() && payments.namespaces.is_some());

    // The agent resolves the selectors to current pod addresses.
    let addresses = |selector: &policy::PodSelector| -> Vec<std::net::IpAddr> {
        match selector.namespace.as_deref() {
            Some("shop")
                if selector
                    .labels
                    .as_ref()
                    .is_some_and(|labels| !labels.match_labels.is_empty()) =>
            {
                vec![
                    "198.18.1.5".parse().expect("ip"),
                    "198.18.3.10".parse().expect("ip"),
                ]
            }
            Some("shop") => vec!["198.18.3.11".parse().expect("ip")],
            _ => vec!["198.18.1.5".parse().expect("ip")],
        }
    };
    let (resolved, overlaps) = policy.resolve_pods(&addresses);
    let cidrs = |name: &str| -> Vec<String> {
        resolved
            .identities
            .iter()
            .find(|identity| identity.name == name)
            .expect("identity")
            .cidrs
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(cidrs("db"), vec!["198.18.3.10/32", "198.18.3.11/32"]);
    // 198.18.3.10 is db's by CIDR; 198.18.1.5 went to frontend (first by name) and not payments.
    assert_eq!(cidrs("frontend"), vec!["198.18.1.5/32"]);
    assert!(cidrs("payments").is_empty());
    let overlapping: Vec<(String, String, String)> = overlaps
        .iter()
        .map(|overlap| {
            (
                overlap.address.to_string(),
                overlap.kept.clone(),
                overlap.dropped.clone(),
            )
        })
        .collect();
    assert_eq!(
        overlapping,
        vec![
            (
                "198.18.3.10".to_owned(),
                "db".to_owned(),
                "frontend".to_owned()
            ),
            (
                "198.18.1.5".to_owned(),
                "frontend".to_owned(),
                "payments".to_owned()
            ),
        ]
    );
}

#[test]
fn selector_mistakes_name_their_field() {
    let cases = [
        (
            "identities:\n  a: {}\n",
            "identities.a.cidrs",
            "at least one CIDR, a pod `selector`",
        ),
        (
            "identities:\n  a: { selector: { namespace: Shop } }\n",
            "identities.a.selector.namespace",
            "not a namespace name",
        ),
        (
            "identities:\n  a: { selector: { matchLabels: { app: \"a b\" } } }\n",
            "identities.a.selector.matchLabels.app",
            "label value",
        ),
        (
            "identities:\n  a: { namespaceSelector: { matchExpressions: [{ key: t, operator: In }] } }\n",
            "identities.a.namespaceSelector.matchExpressions[0].values",
            "at least one value",
        ),
        (
            "identities:\n  a: { selector: { labels: { app: x } } }\n",
            "identities.a.selector.labels",
            "unknown field `labels`",
        ),
    ];
    for (text, field, message) in cases {
        let error = load(text).expect_err(text);
        assert_eq!(error.field.as_deref(), Some(field), "{error}");
        assert!(error.message.contains(message), "{error}");
    }
}

#[test]
fn policies_combine_under_their_own_names() {
    let file = load(EXAMPLE).expect("example");
    let custom = load(
        "identities:\n  api: { cidrs: [\"198.18.9.0/24\"] }\nrules:\n  - { name: no-api, action: deny, from: world, to: api }\nrateLimits:\n  - { name: flood, to: world, perSource: { packetsPerSecond: 10, burst: 10 } }\n",
    )
    .expect("custom");
    let combined = Policy::combine(&[(String::new(), &file), ("shop/p1/".to_owned(), &custom)])
        .expect("combine");
    let names: Vec<&str> = combined
        .identities
        .iter()
        .map(|identity| identity.name.as_str())
        .collect();
    assert_eq!(names, vec!["api", "db", "frontend", "shop/p1/api"]);
    let rule = combined
        .rules
        .iter()
        .find(|rule| rule.name == "shop/p1/no-api")
        .expect("renamed rule");
    assert_eq!(rule.to, Selector::Identity(3));
    let original = combined
        .rules
        .iter()
        .find(|rule| rule.name == "frontend-not-to-db")
        .expect("file rule");
    assert_eq!(
        (original.from, original.to),
        (Selector::Identity(2), Selector::Identity(1))
    );
    assert!(combined.identities[1].isolated);

    let clash = load("identities:\n  x: { cidrs: [\"198.18.3.10/32\"] }\n").expect("clash");
    let error = Policy::combine(&[(String::new(), &file), ("shop/p2/".to_owned(), &clash)])
        .expect_err("same CIDR twice");
    assert_eq!(error.source_name, "shop/p2/");
    assert!(error.message.contains("\"db\" already has"), "{error}");
    let twice = Policy::combine(&[("a/".to_owned(), &custom), ("b/".to_owned(), &load("rateLimits:\n  - { name: f, to: world, perSource: { packetsPerSecond: 1, burst: 1 } }\n").expect("limit"))]);
    assert!(
        twice
            .expect_err("world limited twice")
            .message
            .contains("already limits")
    );
}
