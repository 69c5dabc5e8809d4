//! The analysis as the agent runs it: every call counted in the inventory and checked against
//! its service's bound spec; findings out, with the mode each kind is in.

use std::{collections::HashMap, sync::Arc};

use crate::{
    Exchange, Finding, FindingKind, Severity,
    endpoints::{Documented, EndpointKey, Inventory, InventoryLimits},
    finding::Mode,
    openapi::{Spec, check},
};

/// A spec bound to a service, with how its findings are handled.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The service name calls to it are inventoried under.
    pub service: String,
    pub spec: Arc<Spec>,
    /// Mode of every spec kind not in `modes`.
    pub mode: Mode,
    pub modes: HashMap<FindingKind, Mode>,
    pub severities: HashMap<FindingKind, Severity>,
    /// A documented operation not called for this long is `spec.unused_endpoint`.
    pub unused_after_secs: u64,
}

impl Binding {
    /// The mode of `kind` for this spec. Only kinds the request alone shows can block: the
    /// others are the server's doing, and blocking the client would punish the wrong party.
    pub fn mode_of(&self, kind: FindingKind) -> Mode {
        let mode = self.modes.get(&kind).copied().unwrap_or(self.mode);
        if mode == Mode::Block && !kind.is_about_the_request() {
            Mode::Detect
        } else {
            mode
        }
    }

    fn severity_of(&self, kind: FindingKind) -> Severity {
        self.severities
            .get(&kind)
            .copied()
            .unwrap_or_else(|| kind.default_severity())
    }
}

/// How the inventory's own news is reported.
#[derive(Debug, Clone, Copy)]
pub struct AnalyzerConfig {
    pub limits: InventoryLimits,
    pub new_endpoint: Mode,
    pub new_caller: Mode,
}

impl Default for AnalyzerConfig {
    fn default() -> Self {
        Self {
            limits: InventoryLimits::default(),
            new_endpoint: Mode::Detect,
            new_caller: Mode::Detect,
        }
    }
}

#[derive(Debug)]
struct Bound {
    binding: Binding,
    /// Per operation of the spec: when it was last called (or the binding made), and whether
    /// its absence has been reported since.
    last_called: Vec<u64>,
    reported_unused: Vec<bool>,
}

/// What one call showed: the endpoint it was counted under (None past the bound on services)
/// and its findings.
#[derive(Debug)]
pub struct Observation {
    pub endpoint: Option<EndpointKey>,
    pub findings: Vec<Finding>,
}

#[derive(Debug)]
pub struct Analyzer {
    inventory: Inventory,
    bound: HashMap<String, Bound>,
    config: AnalyzerConfig,
}

impl Analyzer {
    pub fn new(config: AnalyzerConfig) -> Self {
        Self {
            inventory: Inventory::new(config.limits),
            bound: HashMap::new(),
            config,
        }
    }

    /// Makes `bindings` the specs in force, from `now` (Unix seconds). A service whose spec is
    /// unchanged keeps its record of when each operation was last called.
    pub fn bind(&mut self, bindings: Vec<Binding>, now: u64) {
        let mut previous = std::mem::take(&mut self.bound);
        for binding in bindings {
            let operations = binding.spec.operations.len();
            let kept = previous
                .remove(&binding.service)
                .filter(|old| Arc::ptr_eq(&old.binding.spec, &binding.spec));
            let (last_called, reported_unused) = match kept {
                Some(old) => (old.last_called, old.reported_unused),
                None => (vec![now; operations], vec![false; operations]),
            };
            self.bound.insert(
                binding.service.clone(),
                Bound {
                    binding,
                    last_called,
                    reported_unused,
                },
            );
        }
    }

    pub fn binding(&self, service: &str) -> Option<&Binding> {
        self.bound.get(service).map(|bound| &bound.binding)
    }

    pub fn inventory(&mut self) -> &mut Inventory {
        &mut self.inventory
    }

    /// Counts one call to `service` and returns what it showed.
    pub fn observe(&mut self, service: &str, exchange: &Exchange<'_>) -> Observation {
        let mut findings = Vec::new();
        let conformance = self.bound.get_mut(service).map(|bound| {
            let result = check(&bound.binding.spec, exchange);
            if let Some(operation) = result.operation {
                bound.last_called[operation] =
                    bound.last_called[operation].max(exchange.time_unix_secs);
                bound.reported_unused[operation] = false;
            }
            result
        });
        let documented = conformance
            .as_ref()
            .and_then(|result| result.documented.as_ref())
            .map(|(template, pointer)| Documented { template, pointer });
        let Some(observed) = self.inventory.observe(service, exchange, documented) else {
            return Observation {
                endpoint: None,
                findings,
            };
        };
        let method = observed.endpoint.method.clone();
        let endpoint = observed.endpoint.template.clone();
        let finding = |kind: FindingKind,
                       severity: Severity,
                       mode: Mode,
                       pointer: Option<String>,
                       message: String,
                       evidence: String| Finding {
            kind: kind.as_str().into(),
            rule: "".into(),
            severity,
            service: service.to_owned(),
            method: method.clone(),
            endpoint: endpoint.clone(),
            spec_pointer: pointer,
            message,
            evidence,
            mode,
        };
        let news = [
            (
                observed.new_endpoint,
                FindingKind::NewEndpoint,
                self.config.new_endpoint,
                "first call to this endpoint",
            ),
            (
                observed.new_caller,
                FindingKind::NewCaller,
                self.config.new_caller,
                "first call from this caller",
            ),
            (
                observed.overflow_opened,
                FindingKind::EndpointOverflow,
                Mode::Detect,
                "the service has more endpoints than the inventory keeps; further ones are counted together",
            ),
        ];
        for (happened, kind, mode, message) in news {
            if happened && mode != Mode::Off {
                findings.push(finding(
                    kind,
                    kind.default_severity(),
                    mode.min_detect(),
                    None,
                    message.to_owned(),
                    format!("caller {}", exchange.caller),
                ));
            }
        }
        let bound = self.bound.get(service);
        let unauthenticated_success = !exchange.auth.is_authenticated()
            && exchange
                .status
                .is_some_and(|status| (200..300).contains(&status));
        let documented_security = conformance.as_ref().and_then(|result| {
            result
                .violations
                .iter()
                .find(|violation| violation.pointer.ends_with("/security"))
                .map(|violation| violation.pointer.clone())
        });
        if unauthenticated_success && (observed.was_authenticated || documented_security.is_some())
        {
            let kind = FindingKind::AuthMissing;
            let (mode, severity) = bound.map_or((Mode::Detect, kind.default_severity()), |bound| {
                (bound.binding.mode_of(kind), bound.binding.severity_of(kind))
            });
            if mode != Mode::Off {
                let why = if documented_security.is_some() {
                    "the spec requires credentials"
                } else {
                    "every earlier successful call carried credentials"
                };
                findings.push(finding(
                    kind,
                    severity,
                    mode,
                    documented_security,
                    format!(
                        "answered {} to a call without credentials; {why}",
                        exchange.status.unwrap_or_default()
                    ),
                    format!("caller {}", exchange.caller),
                ));
            }
        }
        if let (Some(result), Some(bound)) = (conformance, bound) {
            for violation in result.violations {
                let mode = bound.binding.mode_of(violation.kind);
                if mode == Mode::Off {
                    continue;
                }
                findings.push(finding(
                    violation.kind,
                    bound.binding.severity_of(violation.kind),
                    mode,
                    Some(violation.pointer),
                    violation.message,
                    violation.evidence,
                ));
            }
        }
        Observation {
            endpoint: Some(observed.endpoint),
            findings,
        }
    }

    /// `spec.unused_endpoint` for each documented operation not called within its binding's
    /// window by `now`; once per silence.
    pub fn unused(&mut self, now: u64) -> Vec<Finding> {
        let mut findings = Vec::new();
        for bound in self.bound.values_mut() {
            let binding = &bound.binding;
            let mode = binding.mode_of(FindingKind::UnusedEndpoint);
            if mode == Mode::Off {
                continue;
            }
            for (index, operation) in binding.spec.operations.iter().enumerate() {
                let silent = now.saturating_sub(bound.last_called[index]);
                if bound.reported_unused[index] || silent < binding.unused_after_secs {
                    continue;
                }
                bound.reported_unused[index] = true;
                findings.push(Finding {
                    kind: FindingKind::UnusedEndpoint.as_str().into(),
                    rule: "".into(),
                    severity: binding.severity_of(FindingKind::UnusedEndpoint),
                    service: binding.service.clone(),
                    method: operation.method.clone(),
                    endpoint: operation.template.clone(),
                    spec_pointer: Some(operation.pointer.clone()),
                    message: format!("documented but not called for {silent} s (zombie endpoint)"),
                    evidence: String::new(),
                    mode,
                });
            }
        }
        findings
    }
}

impl Mode {
    /// Inventory news is never a reason to block.
    fn min_detect(self) -> Self {
        if self == Self::Block {
            Self::Detect
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Caller;
    use crate::{auth::AuthScheme, exchange::Side, openapi::Source};

    struct NoFiles;

    impl Source for NoFiles {
        fn read(&mut self, document: &str) -> Result<String, String> {
            Err(format!("{document}: no files here"))
        }
    }

    const SPEC: &str = r#"
openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /items/{id}:
    get:
      parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
      responses: {"200": {description: ok}}
  /health:
    get:
      responses: {"200": {description: ok}}
"#;

    fn binding(mode: Mode) -> Binding {
        let spec = Spec::load(SPEC, "spec.yaml", &mut NoFiles)
            .expect("spec loads")
            .spec;
        Binding {
            service: "items".into(),
            spec: Arc::new(spec),
            mode,
            modes: HashMap::from([(FindingKind::UnexpectedStatus, Mode::Block)]),
            severities: HashMap::from([(FindingKind::InvalidParameter, Severity::High)]),
            unused_after_secs: 60,
        }
    }

    fn call<'a>(path: &'a str, caller: &'a str, status: u16, time: u64) -> Exchange<'a> {
        Exchange {
            method: "GET",
            path,
            query: None,
            status: Some(status),
            request: Side::default(),
            response: Side {
                seen: true,
                ..Side::default()
            },
            // Leaked: a test's few callers must outlive the exchanges that borrow them.
            caller: Box::leak(Box::new(Caller::peer(caller))),
            auth: AuthScheme::None,
            time_unix_secs: time,
            latency_us: Some(10),
        }
    }

    fn kinds(findings: &[Finding]) -> Vec<(Option<FindingKind>, Mode)> {
        findings
            .iter()
            .map(|finding| (FindingKind::parse(&finding.kind), finding.mode))
            .collect()
    }

    #[test]
    fn inventory_news_and_violations_come_out_with_their_modes() {
        let mut analyzer = Analyzer::new(AnalyzerConfig::default());
        analyzer.bind(vec![binding(Mode::Block)], 0);
        let first = analyzer
            .observe("items", &call("/items/1", "web", 200, 1))
            .findings;
        assert_eq!(
            kinds(&first),
            [(Some(FindingKind::NewEndpoint), Mode::Detect)]
        );
        assert_eq!(first[0].endpoint, "/items/{id}");
        assert!(
            analyzer
                .observe("items", &call("/items/2", "web", 200, 2))
                .findings
                .is_empty()
        );
        let bad = analyzer
            .observe("items", &call("/items/x", "batch", 500, 3))
            .findings;
        assert_eq!(
            kinds(&bad),
            [
                (Some(FindingKind::NewCaller), Mode::Detect),
                (Some(FindingKind::InvalidParameter), Mode::Block),
                // Configured to block, but a status is the server's doing.
                (Some(FindingKind::UnexpectedStatus), Mode::Detect),
            ]
        );
        assert_eq!(bad[1].severity, Severity::High);
        let shadow = analyzer
            .observe("items", &call("/admin", "web", 200, 4))
            .findings;
        assert_eq!(
            kinds(&shadow),
            [
                (Some(FindingKind::NewEndpoint), Mode::Detect),
                (Some(FindingKind::UndocumentedEndpoint), Mode::Block)
            ]
        );
    }

    #[test]
    fn an_endpoint_answering_without_credentials_after_always_requiring_them_is_reported() {
        let mut analyzer = Analyzer::new(AnalyzerConfig::default());
        let authenticated = |time| Exchange {
            auth: AuthScheme::BearerJwt,
            ..call("/orders/1", "web", 200, time)
        };
        // Refusals without credentials are what an authenticated endpoint should answer.
        analyzer.observe("shop", &call("/orders/1", "web", 401, 0));
        for time in 1..crate::endpoints::MIN_AUTHENTICATED_SUCCESSES {
            analyzer.observe("shop", &authenticated(time));
        }
        let too_early = analyzer.observe("shop", &call("/orders/1", "bot", 200, 20));
        assert!(
            kinds(&too_early.findings)
                .iter()
                .all(|(kind, _)| *kind != Some(FindingKind::AuthMissing)),
            "nine authenticated successes are not yet a pattern"
        );

        let mut analyzer = Analyzer::new(AnalyzerConfig::default());
        for time in 0..crate::endpoints::MIN_AUTHENTICATED_SUCCESSES {
            analyzer.observe("shop", &authenticated(time));
        }
        let open = analyzer.observe("shop", &call("/orders/1", "bot", 200, 20));
        let missing = open
            .findings
            .iter()
            .find(|finding| finding.kind == FindingKind::AuthMissing.as_str())
            .expect("auth.missing");
        assert_eq!(missing.severity, Severity::High);
        assert!(missing.evidence.contains("bot"), "{}", missing.evidence);
        // Said once: from now on the endpoint is one that answers without credentials.
        let again = analyzer.observe("shop", &call("/orders/1", "bot", 200, 21));
        assert!(again.findings.is_empty(), "{:?}", again.findings);
    }

    #[test]
    fn a_documented_security_requirement_makes_an_unauthenticated_success_auth_missing() {
        let spec = Spec::load(
            r#"
openapi: 3.0.3
info: {title: t, version: "1"}
components: {securitySchemes: {token: {type: http, scheme: bearer}}}
security: [{token: []}]
paths:
  /me: {get: {responses: {"200": {description: ok}, "401": {description: no}}}}
"#,
            "spec.yaml",
            &mut NoFiles,
        )
        .expect("spec loads")
        .spec;
        let mut analyzer = Analyzer::new(AnalyzerConfig::default());
        analyzer.bind(
            vec![Binding {
                service: "me".into(),
                spec: Arc::new(spec),
                mode: Mode::Detect,
                modes: HashMap::new(),
                severities: HashMap::new(),
                unused_after_secs: 60,
            }],
            0,
        );
        let refused = analyzer.observe("me", &call("/me", "web", 401, 1));
        assert!(
            refused
                .findings
                .iter()
                .all(|finding| finding.kind != FindingKind::AuthMissing.as_str())
        );
        let open = analyzer.observe("me", &call("/me", "web", 200, 2));
        let missing = open
            .findings
            .iter()
            .find(|finding| finding.kind == FindingKind::AuthMissing.as_str())
            .expect("auth.missing");
        assert_eq!(
            missing.spec_pointer.as_deref(),
            Some("#/paths/~1me/get/security")
        );
    }

    #[test]
    fn unused_operations_are_reported_once_per_silence() {
        let mut analyzer = Analyzer::new(AnalyzerConfig::default());
        analyzer.bind(vec![binding(Mode::Detect)], 0);
        analyzer.observe("items", &call("/items/1", "web", 200, 50));
        let unused = analyzer.unused(100);
        assert_eq!(unused.len(), 1);
        assert_eq!(
            (unused[0].method.as_str(), unused[0].endpoint.as_str()),
            ("GET", "/health")
        );
        assert!(analyzer.unused(101).is_empty());
        let later = analyzer.unused(200);
        assert_eq!(later.len(), 1, "/items/{{id}} fell silent too");
        analyzer.observe("items", &call("/health", "web", 200, 300));
        assert!(analyzer.unused(330).is_empty());
        assert_eq!(analyzer.unused(400).len(), 1);
    }

    #[test]
    fn rebinding_the_same_spec_keeps_when_operations_were_called() {
        let mut analyzer = Analyzer::new(AnalyzerConfig::default());
        let bound = binding(Mode::Detect);
        analyzer.bind(vec![bound.clone()], 0);
        analyzer.observe("items", &call("/health", "web", 200, 90));
        analyzer.bind(vec![bound], 95);
        let unused = analyzer.unused(100);
        assert_eq!(
            unused
                .iter()
                .map(|f| f.endpoint.as_str())
                .collect::<Vec<_>>(),
            ["/items/{id}"]
        );
    }

    #[test]
    fn off_silences_a_kind() {
        let mut analyzer = Analyzer::new(AnalyzerConfig {
            new_endpoint: Mode::Off,
            ..AnalyzerConfig::default()
        });
        analyzer.bind(vec![binding(Mode::Off)], 0);
        assert!(
            analyzer
                .observe("items", &call("/nope", "web", 200, 1))
                .findings
                .is_empty()
        );
    }
}
