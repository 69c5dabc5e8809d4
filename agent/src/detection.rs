//! The detectors that judge each call beyond its API's spec: sensitive data and token hygiene
//! (the `sensitive` crate), attacks and leaks (the `threats` crate) and credentials sent in
//! clear across the node's boundary. What they report, and how loudly, is set by the
//! `--detection` file (docs/threats.md, docs/sensitive-data.md).

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
    path::Path,
    sync::Arc,
    time::Duration,
};

use intelligence::{Caller, Exchange, Finding, Severity, exchange::Side, finding::Mode};
use policy::{PolicyError, locate::Locations};
use sensitive::{Detection, Direction, HashKey, Scanner, masking::MaskedField};
use serde::Deserialize;
use threats::{
    Threat, ThreatKind,
    behavior::{
        BehaviorConfig, BehaviorDetector, BehaviorStats, BehaviorThreat, Call as BehaviorCall,
        ConfigError as BehaviorConfigError, basic_user, login_account,
    },
};

use crate::repeats::Repeats;

/// How long a source is dropped when a detector in block mode fires, unless the file says.
pub const DEFAULT_BLOCK_FOR: Duration = Duration::from_secs(10 * 60);
/// How long a finding about the server's side (data it returns, its headers, its leaks) stays
/// said before the same one is reported again.
pub const DEFAULT_REPEAT_AFTER: Duration = Duration::from_secs(60 * 60);
/// Findings remembered as said, across all services: bounds the memory of repeats.
const MAX_REMEMBERED: usize = 65_536;
/// Locations listed in one finding about many values of one kind.
const LOCATIONS_SHOWN: usize = 3;
/// Credentials over a plaintext connection, a kind of its own (neither detector crate sees
/// the connection).
pub const PLAINTEXT_CREDENTIALS: &str = "auth.plaintext_credentials";
/// Kinds a request alone shows and that a hostile client sends on purpose: the only ones whose
/// source is worth dropping. Data a client sends, or a server's answer, are not the client's
/// attack.
const BLOCKABLE: [&str; 2] = ["threat.", "auth.jwt_alg_none"];

/// The `--detection` file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DetectionFile {
    /// Kind (`threat.sqli`), family (`data.*`) or `*`, to `off`, `detect` or `block`.
    #[serde(default)]
    modes: BTreeMap<String, Mode>,
    /// Kind to severity, replacing the detector's own.
    #[serde(default)]
    severities: BTreeMap<String, Severity>,
    block_for: Option<String>,
    repeat_after: Option<String>,
    #[serde(default)]
    sensitive: sensitive::Config,
    #[serde(default)]
    callers: CallersFile,
    /// Thresholds of the detectors that judge a source over many calls.
    #[serde(default)]
    behavior: BehaviorConfig,
}

/// How callers are named beyond their address.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CallersFile {
    /// Token claims naming the customer or tenant, the first present wins.
    customer_claims: Option<Vec<String>>,
    /// The token claim naming the end user.
    user_claim: Option<String>,
    /// API keys, by the SHA-256 of the key, to the customer and application they belong to.
    #[serde(default)]
    api_keys: Vec<ApiKeyFile>,
    /// Levels shown in clear; the others are keyed hashes.
    #[serde(default)]
    clear_text: Vec<CallerLevel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApiKeyFile {
    sha256: String,
    customer: Option<String>,
    application: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
enum CallerLevel {
    Customer,
    User,
}

/// What a configured API key says of its holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct KeyHolder {
    customer: Option<String>,
    application: Option<String>,
}

/// How callers are named, validated.
#[derive(Debug, Clone)]
struct Callers {
    customer_claims: Vec<String>,
    user_claim: String,
    /// SHA-256 of the key (lower-case hex) to its holder.
    api_keys: HashMap<String, KeyHolder>,
    clear_customer: bool,
    clear_user: bool,
}

impl Default for Callers {
    fn default() -> Self {
        Self {
            customer_claims: DEFAULT_CUSTOMER_CLAIMS
                .iter()
                .map(|claim| (*claim).to_owned())
                .collect(),
            user_claim: "sub".to_owned(),
            api_keys: HashMap::new(),
            clear_customer: false,
            clear_user: false,
        }
    }
}

/// Claims that name a tenant in common identity providers' tokens.
const DEFAULT_CUSTOMER_CLAIMS: [&str; 5] = ["tenant", "tenant_id", "tid", "org", "org_id"];
/// Longest application name taken from a User-Agent.
const MAX_APPLICATION_CHARS: usize = 32;

/// Which kinds a mode applies to; the most specific pattern wins.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Kind(String),
    /// `data.*`: the prefix with its dot.
    Family(String),
    Everything,
}

impl Pattern {
    fn parse(text: &str) -> Self {
        match text {
            "*" => Self::Everything,
            _ => match text.strip_suffix('*') {
                Some(prefix) => Self::Family(prefix.to_owned()),
                None => Self::Kind(text.to_owned()),
            },
        }
    }

    /// How specifically it matches `kind`: None when it does not.
    fn specificity(&self, kind: &str) -> Option<usize> {
        match self {
            Self::Kind(name) => (name == kind).then_some(usize::MAX),
            Self::Family(prefix) => kind.starts_with(prefix.as_str()).then_some(prefix.len()),
            Self::Everything => Some(0),
        }
    }
}

/// The `--detection` file, validated.
#[derive(Debug, Clone)]
pub struct DetectionConfig {
    modes: Vec<(Pattern, Mode)>,
    severities: HashMap<String, Severity>,
    pub block_for: Duration,
    pub repeat_after: Duration,
    sensitive: sensitive::Config,
    callers: Callers,
    behavior: BehaviorConfig,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            modes: Vec::new(),
            severities: HashMap::new(),
            block_for: DEFAULT_BLOCK_FOR,
            repeat_after: DEFAULT_REPEAT_AFTER,
            sensitive: sensitive::Config::default(),
            callers: Callers::default(),
            behavior: BehaviorConfig::default(),
        }
    }
}

fn blockable(kind: &str) -> bool {
    BLOCKABLE.iter().any(|prefix| kind.starts_with(prefix))
}

impl DetectionConfig {
    /// The mode of `kind`: the most specific pattern's, `detect` when none names it. A family
    /// or `*` set to block blocks only the kinds that can; the rest of it detects.
    pub fn mode_of(&self, kind: &str) -> Mode {
        let mode = self
            .modes
            .iter()
            .filter_map(|(pattern, mode)| Some((pattern.specificity(kind)?, *mode)))
            .max_by_key(|(specificity, _)| *specificity)
            .map_or(Mode::Detect, |(_, mode)| mode);
        if mode == Mode::Block && !blockable(kind) {
            Mode::Detect
        } else {
            mode
        }
    }

    pub fn severity_of(&self, kind: &str, detected: Severity) -> Severity {
        self.severities.get(kind).copied().unwrap_or(detected)
    }
}

/// Every kind the detectors can report, with the configured detectors' `data.<name>`.
fn known_kinds(sensitive: &sensitive::Config) -> Vec<String> {
    ThreatKind::ALL
        .iter()
        .map(|kind| kind.as_str().to_owned())
        .chain(sensitive::KINDS.iter().map(|kind| (*kind).to_owned()))
        .chain(std::iter::once(PLAINTEXT_CREDENTIALS.to_owned()))
        .chain(crate::crypto::KINDS.iter().map(|kind| (*kind).to_owned()))
        .chain(
            sensitive
                .detectors
                .iter()
                .map(|detector| format!("data.{}", detector.name)),
        )
        .collect()
}

/// Reads and validates the detection file at `path` (through `read`, so that its changes are
/// followed like the policy's).
pub fn load_with(
    path: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<DetectionConfig, PolicyError> {
    let text = read(path).map_err(|error| PolicyError {
        file: path.to_owned(),
        line: None,
        column: None,
        field: None,
        message: format!("cannot read the detection file: {error}"),
    })?;
    parse(&text, path)
}

fn parse(text: &str, origin: &Path) -> Result<DetectionConfig, PolicyError> {
    let file: DetectionFile = if text.trim().is_empty() {
        DetectionFile::default()
    } else {
        policy::deserialize_located(text, origin)?
    };
    let locations = Locations::of(text);
    let error = |field: String, message: String| {
        let (line, column) = locations.nearest(&field).unzip();
        PolicyError {
            file: origin.to_owned(),
            line,
            column,
            field: Some(field),
            message,
        }
    };
    // Compiling the configured detectors is the only way to know they are valid.
    Scanner::new(&file.sensitive, HashKey::new([0; 32]))
        .map_err(|problem| error("sensitive".to_owned(), problem.to_string()))?;
    BehaviorDetector::new(&file.behavior, [0; 16]).map_err(|problem| match problem {
        BehaviorConfigError::OutOfRange { field, .. } => {
            error(format!("behavior.{field}"), problem.to_string())
        }
    })?;
    let kinds = known_kinds(&file.sensitive);
    let known = |field: String, name: &str| match Pattern::parse(name) {
        Pattern::Kind(kind) if !kinds.contains(&kind) => Err(error(
            field,
            format!(
                "no detector reports {kind:?}; name a kind (threat.sqli, data.email, ...), a family (threat.*, data.*, auth.*, leak.*, headers.*, crypto.*) or *"
            ),
        )),
        Pattern::Family(prefix)
            if !kinds.iter().any(|kind| kind.starts_with(&prefix)) || !prefix.ends_with('.') =>
        {
            Err(error(
                field,
                format!(
                    "{name:?} is no family of kinds; families are threat.*, data.*, auth.*, leak.*, headers.* and crypto.*"
                ),
            ))
        }
        pattern => Ok(pattern),
    };
    let mut modes = Vec::new();
    for (name, mode) in file.modes {
        let field = format!("modes.{name}");
        let pattern = known(field.clone(), &name)?;
        if let (Pattern::Kind(kind), Mode::Block) = (&pattern, mode)
            && !blockable(kind)
        {
            return Err(error(
                field,
                format!(
                    "block drops the caller's packets, which only fits kinds a hostile request shows (threat.*, auth.jwt_alg_none); set {kind} to detect"
                ),
            ));
        }
        modes.push((pattern, mode));
    }
    let mut severities = HashMap::new();
    for (name, severity) in file.severities {
        let field = format!("severities.{name}");
        match known(field.clone(), &name)? {
            Pattern::Kind(kind) => {
                severities.insert(kind, severity);
            }
            _ => {
                return Err(error(
                    field,
                    "a severity is set per kind (threat.sqli), not per family".to_owned(),
                ));
            }
        }
    }
    let duration = |field: &str, text: Option<String>, default: Duration| match text {
        None => Ok(default),
        Some(text) => match humantime::parse_duration(&text) {
            Ok(duration) if duration >= Duration::from_secs(1) => Ok(duration),
            Ok(_) => Err(error(
                field.to_owned(),
                format!("{text:?} is under a second"),
            )),
            Err(problem) => Err(error(
                field.to_owned(),
                format!("{text:?} is not a duration like 10m or 1h: {problem}"),
            )),
        },
    };
    let defaults = Callers::default();
    let mut api_keys = HashMap::new();
    for (index, key) in file.callers.api_keys.into_iter().enumerate() {
        let field = format!("callers.apiKeys[{index}].sha256");
        let digest = key.sha256.to_ascii_lowercase();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(error(
                field,
                "not a SHA-256 in hex (64 characters); write the key's: printf %s \"$KEY\" | sha256sum".to_owned(),
            ));
        }
        let holder = KeyHolder {
            customer: key.customer,
            application: key.application,
        };
        if api_keys.insert(digest, holder).is_some() {
            return Err(error(field, "this key is listed twice".to_owned()));
        }
    }
    let clear = &file.callers.clear_text;
    let callers = Callers {
        customer_claims: file
            .callers
            .customer_claims
            .unwrap_or(defaults.customer_claims),
        user_claim: file.callers.user_claim.unwrap_or(defaults.user_claim),
        api_keys,
        clear_customer: clear.contains(&CallerLevel::Customer),
        clear_user: clear.contains(&CallerLevel::User),
    };
    Ok(DetectionConfig {
        modes,
        severities,
        block_for: duration("blockFor", file.block_for, DEFAULT_BLOCK_FOR)?,
        repeat_after: duration("repeatAfter", file.repeat_after, DEFAULT_REPEAT_AFTER)?,
        sensitive: file.sensitive,
        callers,
        behavior: file.behavior,
    })
}

/// What the agent knows of a call's client before naming it.
#[derive(Debug, Clone, Copy)]
pub struct ClientFacts<'a> {
    /// The workload, service, node, range or address ([`crate::analysis::caller_label`]).
    pub peer: &'a str,
    /// The customer of the client's range, which the operator declared.
    pub range_customer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// The request's credential headers as sent.
    pub credentials: &'a [(&'a str, &'a str)],
}

/// One call as the detectors see it: the exchange the spec analysis judged, and what the
/// agent knows beyond it.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    pub exchange: &'a Exchange<'a>,
    pub service: &'a str,
    /// The endpoint template the inventory counted the call under (the path when none).
    pub endpoint: &'a str,
    /// The request's credential headers as sent (the record carries them redacted).
    pub credentials: &'a [(&'a str, &'a str)],
    /// Fields the called API's spec declares masked.
    pub masked: &'a [MaskedField],
    /// The connection's bytes crossed this node's boundary: one end is not a process here.
    pub crosses_node: bool,
    /// The call travelled encrypted (so far, captured calls are all from plaintext
    /// connections: TLS would have hidden them from the socket capture).
    pub encrypted: bool,
}

/// What the detectors made of one call.
#[derive(Debug, Default)]
pub struct Judgement {
    pub findings: Vec<Finding>,
    /// Every sensitive value and token problem, before modes and repeats thin them into
    /// findings.
    pub detections: Vec<Detection>,
}

/// What the detectors did that the metrics show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectionStats {
    /// Findings about the server's side not reported again within `repeatAfter`.
    pub repeats_suppressed: u64,
    /// Times the memory of said findings was full and forgotten (each may repeat once early).
    pub memory_resets: u64,
    /// Calls whose bodies were not judged, and their body bytes, because the second's body
    /// budget was spent (their request line, headers and callers still were).
    pub bodies_unjudged: u64,
    pub body_bytes_unjudged: u64,
}

/// Body bytes the detectors may read per second: scanning bodies is what costs, and a burst of
/// large bodies must not starve capture (whose loss would hide more than a body does).
#[derive(Debug, Clone, Copy)]
struct BodyBudget {
    bytes_per_second: u64,
    second: u64,
    spent: u64,
}

impl BodyBudget {
    fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second,
            second: 0,
            spent: 0,
        }
    }

    /// Whether `bytes` more fit in second `now` (Unix seconds); if so they are spent.
    fn admit(&mut self, now: u64, bytes: u64) -> bool {
        if now != self.second {
            self.second = now;
            self.spent = 0;
        }
        let fits = self.spent.saturating_add(bytes) <= self.bytes_per_second;
        if fits {
            self.spent += bytes;
        }
        fits
    }
}

/// The detectors, compiled, with the memory of which server-side findings were said.
pub struct Detectors {
    config: Arc<DetectionConfig>,
    key: HashKey,
    threats: threats::Detector,
    scanner: Scanner,
    /// Which server-side findings were reported, and when.
    said: Repeats,
    /// Bursts of one source over many calls: recon, BOLA enumeration, credential stuffing.
    behavior: BehaviorDetector,
    budget: BodyBudget,
    stats: DetectionStats,
}

impl Detectors {
    /// `config` was validated when loaded, so compiling it again cannot fail; `key` keys the
    /// evidence hashes; at most `body_bytes_per_second` of bodies are judged each second.
    pub fn new(config: Arc<DetectionConfig>, key: HashKey, body_bytes_per_second: u64) -> Self {
        let scanner = Scanner::new(&config.sensitive, key.clone())
            .unwrap_or_else(|_| unreachable!("a loaded detection config compiles"));
        let behavior = behavior_detector(&config.behavior, &key);
        Self {
            config,
            key,
            threats: threats::Detector::new(),
            scanner,
            said: Repeats::new(MAX_REMEMBERED),
            behavior,
            budget: BodyBudget::new(body_bytes_per_second),
            stats: DetectionStats::default(),
        }
    }

    /// Puts a new detection file in force, keeping what the detectors remember (which findings
    /// were said, and the sources' bursts when their thresholds did not change): a reload must
    /// not repeat every finding or let a burst under way start over.
    pub fn reconfigure(&mut self, config: Arc<DetectionConfig>) {
        let kept_behavior = config.behavior == self.config.behavior;
        let mut next = Self::new(config, self.key.clone(), self.budget.bytes_per_second);
        next.budget = self.budget;
        std::mem::swap(&mut next.said, &mut self.said);
        next.stats = self.stats;
        if kept_behavior {
            std::mem::swap(&mut next.behavior, &mut self.behavior);
        }
        *self = next;
    }

    pub fn config(&self) -> &DetectionConfig {
        &self.config
    }

    pub fn stats(&self) -> DetectionStats {
        DetectionStats {
            repeats_suppressed: self.said.suppressed,
            memory_resets: self.said.resets,
            ..self.stats
        }
    }

    pub fn behavior_stats(&self) -> BehaviorStats {
        self.behavior.stats()
    }

    /// Everything the detectors find in one call: findings with their modes, and the
    /// sensitive values the call carried (for the data flows, whatever the findings' modes).
    pub fn judge(&mut self, call: &CallContext<'_>) -> Judgement {
        let body_bytes =
            (call.exchange.request.body.len() + call.exchange.response.body.len()) as u64;
        let without_bodies;
        let exchange = if self.budget.admit(call.exchange.time_unix_secs, body_bytes) {
            call.exchange
        } else {
            self.stats.bodies_unjudged += 1;
            self.stats.body_bytes_unjudged += body_bytes;
            fn unread(side: Side<'_>) -> Side<'_> {
                Side {
                    body: &[],
                    body_complete: false,
                    ..side
                }
            }
            without_bodies = Exchange {
                request: unread(call.exchange.request),
                response: unread(call.exchange.response),
                ..*call.exchange
            };
            &without_bodies
        };
        let call = &CallContext { exchange, ..*call };
        let mut found: Vec<(Finding, Option<u64>)> = Vec::new();
        for threat in self.threats.request(exchange) {
            found.push((self.threat_finding(call, &threat), None));
        }
        for threat in self.threats.response(exchange) {
            let said = said_key(call, threat.kind.as_str(), threat.rule, "");
            found.push((self.threat_finding(call, &threat), Some(said)));
        }
        let mut detections = self
            .scanner
            .scan_with_masks(exchange, call.service, call.masked);
        detections.extend(
            self.scanner
                .presented_tokens(call.credentials, exchange, call.service),
        );
        for (finding, said) in self.data_findings(call, &detections) {
            found.push((finding, Some(said)));
        }
        let account = login_attempt(call);
        let behavior_call = BehaviorCall {
            account: account.as_deref(),
            ..BehaviorCall::from_exchange(exchange, call.service, call.endpoint)
        };
        for burst in self.behavior.observe(&behavior_call) {
            found.push((self.burst_finding(call, &burst), None));
        }
        if exchange.auth.is_authenticated() && call.crosses_node && !call.encrypted {
            let finding = self.finding(
                call,
                PLAINTEXT_CREDENTIALS,
                "",
                Severity::High,
                format!(
                    "{} credentials crossed the node unencrypted",
                    exchange.auth.as_str()
                ),
                format!("caller {}", exchange.caller),
            );
            found.push((
                finding,
                Some(said_key(
                    call,
                    PLAINTEXT_CREDENTIALS,
                    "",
                    &exchange.caller.peer,
                )),
            ));
        }
        let now = exchange.time_unix_secs;
        let findings = found
            .into_iter()
            .filter(|(finding, _)| finding.mode != Mode::Off)
            .filter(|(_, said)| said.is_none_or(|said| self.first_saying(said, now)))
            .map(|(finding, _)| finding)
            .collect();
        Judgement {
            findings,
            detections,
        }
    }

    /// The caller at four levels: its network identity, its application, its customer and its
    /// end user, each as clear as the detection file allows.
    pub fn caller(&self, client: &ClientFacts<'_>) -> Caller {
        let callers = &self.config.callers;
        let hashed = |value: &str| format!("#{}", self.key.digest(value));
        let shown = |value: &str, clear: bool| {
            if clear {
                value.to_owned()
            } else {
                hashed(value)
            }
        };
        let mut api_key = None;
        let mut token_claims = None;
        let basic_user = basic_user(&Side {
            headers: client.credentials,
            ..Side::default()
        });
        for (name, value) in client.credentials {
            if name.eq_ignore_ascii_case("authorization") {
                if let Some((scheme, token)) = value.trim().split_once(' ')
                    && scheme.eq_ignore_ascii_case("bearer")
                {
                    token_claims = sensitive::jwt::decode(token.trim())
                        .ok()
                        .map(|token| token.claims);
                }
            } else if !matches!(
                name.to_ascii_lowercase().as_str(),
                "cookie" | "proxy-authorization"
            ) {
                api_key = Some(*value);
            }
        }
        let holder = api_key
            .and_then(|key| {
                use sha2::Digest as _;
                let digest: String = sha2::Sha256::digest(key.as_bytes())
                    .iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect();
                callers.api_keys.get(&digest).cloned()
            })
            .unwrap_or_default();
        let claim = |name: &str| {
            token_claims
                .as_ref()?
                .get(name)
                .and_then(|value| match value {
                    serde_json::Value::String(text) => Some(text.clone()),
                    serde_json::Value::Number(number) => Some(number.to_string()),
                    _ => None,
                })
                .filter(|text| !text.is_empty())
        };
        let customer = client
            .range_customer
            .map(str::to_owned)
            .or(holder.customer)
            .or_else(|| {
                callers
                    .customer_claims
                    .iter()
                    .find_map(|name| claim(name))
                    .map(|tenant| shown(&tenant, callers.clear_customer))
            });
        let user = claim(&callers.user_claim)
            .or(basic_user)
            .map(|user| shown(&user, callers.clear_user));
        Caller {
            peer: client.peer.to_owned(),
            application: holder
                .application
                .or_else(|| client.user_agent.and_then(application_of)),
            api_key: api_key.map(hashed),
            customer,
            user,
        }
    }

    /// Whether a server-side finding is news: not said within `repeatAfter`.
    fn first_saying(&mut self, said: u64, now: u64) -> bool {
        let window = self.config.repeat_after.as_secs();
        self.said.first_saying(said, now, window)
    }

    fn finding(
        &self,
        call: &CallContext<'_>,
        kind: impl Into<Cow<'static, str>>,
        rule: impl Into<Cow<'static, str>>,
        severity: Severity,
        message: String,
        evidence: String,
    ) -> Finding {
        let kind = kind.into();
        Finding {
            severity: self.config.severity_of(&kind, severity),
            mode: self.config.mode_of(&kind),
            kind,
            rule: rule.into(),
            service: call.service.to_owned(),
            method: call.exchange.method.to_owned(),
            endpoint: call.endpoint.to_owned(),
            spec_pointer: None,
            message,
            evidence,
        }
    }

    fn burst_finding(&self, call: &CallContext<'_>, burst: &BehaviorThreat) -> Finding {
        Finding {
            endpoint: burst
                .endpoint
                .as_deref()
                .and_then(|endpoint| endpoint.split_once(' '))
                .map_or_else(
                    || call.endpoint.to_owned(),
                    |(_, template)| template.to_owned(),
                ),
            ..self.finding(
                call,
                burst.kind.as_str(),
                burst.rule,
                burst.severity,
                format!("{}: {}", describe(burst.kind), burst.message),
                format!("caller {}", call.exchange.caller),
            )
        }
    }

    fn threat_finding(&self, call: &CallContext<'_>, threat: &Threat) -> Finding {
        self.finding(
            call,
            threat.kind.as_str(),
            threat.rule,
            threat.severity,
            format!("{} in {}", describe(threat.kind), threat.location),
            format!("{}: {}", threat.location, threat.evidence),
        )
    }

    /// One finding per kind and message side of the call, however many values showed it (a
    /// list of a hundred customers is one finding that the response carries emails).
    fn data_findings(
        &self,
        call: &CallContext<'_>,
        detections: &[Detection],
    ) -> Vec<(Finding, u64)> {
        let mut groups: BTreeMap<(&str, Direction), Vec<&Detection>> = BTreeMap::new();
        for detection in detections {
            groups
                .entry((&detection.kind, detection.direction))
                .or_default()
                .push(detection);
        }
        groups
            .into_iter()
            .map(|((kind, direction), group)| {
                let first = group[0];
                let side = match direction {
                    Direction::Request => "request",
                    Direction::Response => "response",
                };
                let locations: Vec<String> = group
                    .iter()
                    .take(LOCATIONS_SHOWN)
                    .map(|detection| detection.location.to_string())
                    .collect();
                let more = group.len().saturating_sub(LOCATIONS_SHOWN);
                let mut message = format!(
                    "{} {} value{} in the {side}",
                    group.len(),
                    first.evidence.class.as_str(),
                    if group.len() == 1 { "" } else { "s" },
                );
                if let Some(detail) = &first.detail {
                    message.push_str(&format!(" ({detail})"));
                }
                let mut evidence = format!("{}: {}", locations.join(", "), first.evidence);
                if more > 0 {
                    evidence.push_str(&format!(" and {more} more"));
                }
                let severity = group
                    .iter()
                    .map(|detection| detection.severity)
                    .max()
                    .unwrap_or(first.severity);
                // A token is judged per token, data per place it appears.
                let identity = if kind.starts_with("auth.") {
                    first.evidence.hash.clone()
                } else {
                    format!("{side} {}", normalized_locations(&group))
                };
                let said = said_key(call, kind, "", &identity);
                let finding = self.finding(
                    call,
                    Cow::Owned(kind.to_owned()),
                    "",
                    severity,
                    message,
                    evidence,
                );
                (finding, said)
            })
            .collect()
    }
}

/// Where a group of detections sat, with array indices folded (`/items/7/email` and
/// `/items/8/email` are one place).
fn normalized_locations(group: &[&Detection]) -> String {
    let mut places: Vec<String> = group
        .iter()
        .map(|detection| {
            detection
                .location
                .to_string()
                .split('/')
                .map(|segment| {
                    if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
                        "*"
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    places.sort();
    places.dedup();
    places.join(",")
}

/// The account a call logs in as, for credential stuffing: read only from refused calls and
/// from successful ones that send something (a login is never a GET of a page), with the
/// credentials as sent.
fn login_attempt(call: &CallContext<'_>) -> Option<String> {
    let exchange = call.exchange;
    let refused = matches!(exchange.status, Some(401 | 403));
    let sent = exchange
        .status
        .is_some_and(|status| (200..300).contains(&status))
        && !exchange.method.eq_ignore_ascii_case("GET");
    if !refused && !sent {
        return None;
    }
    // The unredacted credentials first: a header is looked up by its first occurrence.
    let headers: Vec<(&str, &str)> = call
        .credentials
        .iter()
        .chain(exchange.request.headers)
        .copied()
        .collect();
    login_account(&Side {
        headers: &headers,
        ..exchange.request
    })
}

/// The behavioural detectors, keyed from the agent's hash key (their hashes of paths, ids and
/// accounts must not be computable by whoever knows the values).
fn behavior_detector(config: &BehaviorConfig, key: &HashKey) -> BehaviorDetector {
    let derived = key.derive("moat behavioural detectors");
    let mut behavior_key = [0; 16];
    behavior_key.copy_from_slice(&derived[..16]);
    BehaviorDetector::new(config, behavior_key)
        .unwrap_or_else(|_| unreachable!("a loaded detection config's thresholds are in range"))
}

/// The client software a User-Agent names: its first product's name (`curl`,
/// `python-requests`, `okhttp`), or `browser` for the `Mozilla/` family, whose details only
/// fingerprint people.
fn application_of(user_agent: &str) -> Option<String> {
    let product = user_agent.split_whitespace().next()?;
    let name = product.split('/').next()?.to_ascii_lowercase();
    if name == "mozilla" {
        return Some("browser".to_owned());
    }
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(MAX_APPLICATION_CHARS)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// A finding's identity for the memory of what was said: where, what, and `detail`.
fn said_key(call: &CallContext<'_>, kind: &str, rule: &str, detail: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    (
        call.service,
        call.exchange.method,
        call.endpoint,
        kind,
        rule,
        detail,
    )
        .hash(&mut hasher);
    hasher.finish()
}

/// The kind in words, for the finding's message.
fn describe(kind: ThreatKind) -> &'static str {
    match kind {
        ThreatKind::Sqli => "SQL injection",
        ThreatKind::Xss => "cross-site scripting",
        ThreatKind::PathTraversal => "path traversal",
        ThreatKind::CommandInjection => "command injection",
        ThreatKind::Ssrf => "server-side request forgery",
        ThreatKind::Jndi => "JNDI lookup or Java code injection",
        ThreatKind::Nosqli => "NoSQL injection",
        ThreatKind::Scanner => "a vulnerability scanner's fingerprint",
        ThreatKind::StackTrace => "a stack trace",
        ThreatKind::DebugPage => "a debug page or database error",
        ThreatKind::InternalAddress => "an internal address",
        ThreatKind::MissingSecurityHeaders => "security headers missing",
        ThreatKind::CorsMisconfigured => "a CORS policy open to any origin with credentials",
        ThreatKind::Recon => "reconnaissance",
        ThreatKind::BolaEnumeration => "object id enumeration (BOLA)",
        ThreatKind::CredentialStuffing => "credential stuffing",
    }
}

/// The key that makes evidence hashes correlatable across this deployment's agents: the
/// SHA-256 of `--hash-key-file`'s contents, or random per process when no file is given.
pub fn hash_key(file: Option<&Path>) -> anyhow::Result<HashKey> {
    use anyhow::Context as _;
    use sha2::Digest as _;
    let bytes = match file {
        Some(file) => {
            let secret = std::fs::read(file)
                .with_context(|| format!("reading --hash-key-file {}", file.display()))?;
            anyhow::ensure!(
                secret.len() >= 16,
                "--hash-key-file {} holds {} bytes; a key needs at least 16 random bytes",
                file.display(),
                secret.len()
            );
            secret
        }
        None => {
            let mut random = vec![0; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut urandom| std::io::Read::read_exact(&mut urandom, &mut random))
                .context("reading /dev/urandom for an evidence hash key")?;
            random
        }
    };
    Ok(HashKey::new(sha2::Sha256::digest(&bytes).into()))
}

#[cfg(test)]
mod tests;
