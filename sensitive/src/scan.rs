//! The scanner: takes one observed call apart into named values (headers, query parameters,
//! JSON fields, form fields, plain text) and runs every detector over each value once.

use std::borrow::Cow;

use intelligence::exchange::{REDACTED, Side};
use intelligence::{Exchange, Severity};
use percent_encoding::percent_decode_str;
use serde_json::Value;

use crate::builtin::{self, Builtin, Context};
use crate::config::{self, Config, ConfigError, Custom};
use crate::detection::{DataClass, Detection, Direction, Evidence, HashKey, Location};
use crate::jwt::{self, TokenUse};
use crate::masking::MaskedField;

/// Bounds on the work one call can cause.
pub const MAX_BODY_BYTES: usize = 1 << 20;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_JSON_DEPTH: usize = 32;
pub const MAX_JSON_VALUES: usize = 10_000;
pub const MAX_QUERY_PARAMS: usize = 256;
pub const MAX_DETECTIONS: usize = 256;

/// Query parameter names that carry credentials (beyond password and secret field names).
const CREDENTIAL_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "auth",
    "auth_token",
    "authorization",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "session",
    "sessionid",
    "jwt",
    "bearer",
    "client_secret",
];

#[derive(Debug, Clone)]
pub struct Scanner {
    builtin: Builtin,
    custom: Custom,
    masked: Vec<MaskedField>,
    key: HashKey,
}

impl Scanner {
    pub fn new(config: &Config, key: HashKey) -> Result<Self, ConfigError> {
        config::check_masked_fields(&config.masked_fields)?;
        Ok(Self {
            builtin: Builtin::new(),
            custom: Custom::compile(&config.detectors)?,
            masked: config.masked_fields.clone(),
            key,
        })
    }

    /// Adds fields declared masked elsewhere (a spec's `x-moat-masked`, see
    /// [`crate::masking::from_schema`]).
    pub fn with_masked_fields(mut self, fields: impl IntoIterator<Item = MaskedField>) -> Self {
        self.masked.extend(fields);
        self
    }

    /// Everything sensitive in one call to `service` (the called service's name, which token
    /// audiences are expected to name), at most [`MAX_DETECTIONS`].
    pub fn scan(&self, exchange: &Exchange<'_>, service: &str) -> Vec<Detection> {
        self.scan_with_masks(exchange, service, &[])
    }

    /// As [`Self::scan`], with fields the called API's spec declares masked besides the
    /// configured ones ([`crate::masking::declared_in_spec`]).
    pub fn scan_with_masks(
        &self,
        exchange: &Exchange<'_>,
        service: &str,
        declared: &[MaskedField],
    ) -> Vec<Detection> {
        let mut out = Vec::new();
        for (direction, side) in [
            (Direction::Request, &exchange.request),
            (Direction::Response, &exchange.response),
        ] {
            let token_use = TokenUse {
                status: exchange.status,
                now_unix_secs: exchange.time_unix_secs,
                service,
                presented: direction == Direction::Request,
            };
            let mut pass = Pass {
                scanner: self,
                declared,
                direction,
                token_use,
                out: &mut out,
            };
            // The request target is known whenever the call is, even with its message unkept.
            if direction == Direction::Request {
                pass.url(exchange.path, exchange.query);
            }
            if side.seen {
                pass.headers(side);
                pass.body(side);
            }
        }
        out.truncate(MAX_DETECTIONS);
        out
    }

    /// Hygiene of the tokens a request presented in its credential headers (`Authorization:
    /// Bearer`, JWTs in cookies), for headers the agent keeps apart from the call it reports.
    /// A token where a token belongs is not a leak: only its problems are reported, and PII
    /// in its claims.
    pub fn presented_tokens(
        &self,
        credentials: &[(&str, &str)],
        exchange: &Exchange<'_>,
        service: &str,
    ) -> Vec<Detection> {
        let mut out = Vec::new();
        let mut pass = Pass {
            scanner: self,
            declared: &[],
            direction: Direction::Request,
            token_use: TokenUse {
                status: exchange.status,
                now_unix_secs: exchange.time_unix_secs,
                service,
                presented: true,
            },
            out: &mut out,
        };
        for (name, value) in credentials {
            let location = Location::Header {
                name: (*name).to_owned(),
            };
            for token in presented_jwts(name, value) {
                pass.token(token, &location);
            }
        }
        out.truncate(MAX_DETECTIONS);
        out
    }

    /// Everything sensitive in one value found under `key`, for callers that take messages
    /// apart themselves (and for JWT claims).
    pub fn scan_value(
        &self,
        value: &str,
        key: Option<&str>,
        location: Location,
        direction: Direction,
        service: &str,
    ) -> Vec<Detection> {
        let mut out = Vec::new();
        let token_use = TokenUse {
            status: None,
            now_unix_secs: 0,
            service,
            presented: direction == Direction::Request,
        };
        Pass {
            scanner: self,
            declared: &[],
            direction,
            token_use,
            out: &mut out,
        }
        .value(value.as_bytes(), key, &location);
        out
    }
}

/// The JWTs a credential header carries: a bearer token, or cookie values shaped like one.
fn presented_jwts<'v>(name: &str, value: &'v str) -> Vec<&'v str> {
    let looks_like_jwt = |text: &str| text.starts_with("eyJ") && text.matches('.').count() == 2;
    if name.eq_ignore_ascii_case("cookie") {
        return value
            .split(';')
            .filter_map(|pair| pair.split_once('=').map(|(_, value)| value.trim()))
            .filter(|value| looks_like_jwt(value))
            .collect();
    }
    let token = match value.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => value.trim(),
    };
    if looks_like_jwt(token) {
        vec![token]
    } else {
        Vec::new()
    }
}

/// One side of one call being scanned.
struct Pass<'s, 'o> {
    scanner: &'s Scanner,
    /// Masked fields the called API's spec declares.
    declared: &'s [MaskedField],
    direction: Direction,
    token_use: TokenUse<'s>,
    out: &'o mut Vec<Detection>,
}

impl Pass<'_, '_> {
    fn full(&self) -> bool {
        self.out.len() >= MAX_DETECTIONS
    }

    fn push(
        &mut self,
        kind: Cow<'static, str>,
        severity: Severity,
        location: &Location,
        evidence: Evidence,
        detail: Option<String>,
    ) {
        if !self.full() {
            self.out.push(Detection {
                kind,
                severity,
                direction: self.direction,
                location: location.clone(),
                evidence,
                detail,
            });
        }
    }

    fn evidence(&self, class: DataClass, value: &str, normalized: &str, reveal: usize) -> Evidence {
        Evidence::new(&self.scanner.key, class, value, normalized, reveal)
    }

    fn headers(&mut self, side: &Side<'_>) {
        for (name, value) in side.headers {
            if *value != REDACTED {
                self.value(
                    value.as_bytes(),
                    Some(name),
                    &Location::Header {
                        name: (*name).to_owned(),
                    },
                );
            }
        }
    }

    fn url(&mut self, path: &str, query: Option<&str>) {
        // Credentials written as userinfo in an absolute-form target: `http://user:pass@host/`.
        if let Some((_, rest)) = path.split_once("://")
            && let Some((userinfo, _)) = rest.split('/').next().unwrap_or_default().split_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
            && !builtin::placeholder(password)
        {
            let evidence = self.evidence(DataClass::Secret, password, password, 0);
            self.push(
                Cow::Borrowed("auth.credentials_in_url"),
                Severity::High,
                &Location::Path,
                evidence,
                Some("userinfo password".into()),
            );
        }
        let Some(query) = query else {
            return;
        };
        for (name, value) in form_pairs(query) {
            let location = Location::Query {
                param: name.clone(),
            };
            let before = self.out.len();
            self.value(value.as_bytes(), Some(&name), &location);
            let secret_found = self.out[before..]
                .iter()
                .any(|d| d.evidence.class == DataClass::Secret);
            let named = CREDENTIAL_PARAMS.contains(&name.to_ascii_lowercase().as_str())
                || builtin::by_field_name(&name, &value).is_some();
            if (secret_found || named) && !builtin::placeholder(&value) {
                let evidence = self.evidence(DataClass::Secret, &value, &value, 0);
                self.push(
                    Cow::Borrowed("auth.credentials_in_url"),
                    Severity::High,
                    &location,
                    evidence,
                    Some(format!("query parameter {name}")),
                );
            }
        }
    }

    fn body(&mut self, side: &Side<'_>) {
        let Some(body) = side.plain_body() else {
            return;
        };
        let body = &body[..body.len().min(MAX_BODY_BYTES)];
        let media = side.media_type().unwrap_or_default();
        let looks_json = body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| matches!(b, b'{' | b'['));
        if (media.contains("json") || (media.is_empty() && looks_json))
            && let Ok(json) = serde_json::from_slice::<Value>(body)
        {
            self.json(&json);
            return;
        }
        if media == "application/x-www-form-urlencoded" {
            let text = String::from_utf8_lossy(body);
            for (name, value) in form_pairs(&text) {
                self.value(
                    value.as_bytes(),
                    Some(&name),
                    &Location::Form {
                        field: name.clone(),
                    },
                );
            }
            return;
        }
        self.value(body, None, &Location::Text { offset: 0 });
    }

    /// Walks `root` depth-first with an explicit stack, to bounded depth and value count.
    /// Each value is carried with its JSON Pointer and its name (the key or index it sits
    /// under), so that the name is never parsed back out of the pointer.
    fn json(&mut self, root: &Value) {
        let mut stack: Vec<(&Value, String, Cow<'_, str>, usize)> =
            vec![(root, String::new(), Cow::Borrowed(""), 0)];
        let mut visited = 0;
        while let Some((value, pointer, name, depth)) = stack.pop() {
            visited += 1;
            if visited > MAX_JSON_VALUES || self.full() {
                return;
            }
            match value {
                Value::Object(map) if depth < MAX_JSON_DEPTH => {
                    for (key, child) in map.iter().rev() {
                        let child_pointer = if key.contains(['~', '/']) {
                            let segment = key.replace('~', "~0").replace('/', "~1");
                            format!("{pointer}/{segment}")
                        } else {
                            format!("{pointer}/{key}")
                        };
                        stack.push((child, child_pointer, Cow::Borrowed(key), depth + 1));
                    }
                }
                Value::Array(items) if depth < MAX_JSON_DEPTH => {
                    for (index, child) in items.iter().enumerate().rev() {
                        let index = index.to_string();
                        stack.push((
                            child,
                            format!("{pointer}/{index}"),
                            Cow::Owned(index),
                            depth + 1,
                        ));
                    }
                }
                Value::String(text) => self.json_leaf(text, &pointer, &name),
                Value::Number(number) => self.json_leaf(&number.to_string(), &pointer, &name),
                _ => {}
            }
        }
    }

    fn json_leaf(&mut self, text: &str, pointer: &str, name: &str) {
        let location = Location::Json {
            pointer: pointer.to_owned(),
        };
        let before = self.out.len();
        self.value(text.as_bytes(), Some(name), &location);
        let masked = self
            .scanner
            .masked
            .iter()
            .chain(self.declared)
            .find(|field| field.covers(pointer, name));
        if let Some(field) = masked
            && field.ineffective(text)
        {
            let class = self.out[before..]
                .first()
                .map_or(DataClass::Pii, |d| d.evidence.class);
            let evidence = self.evidence(class, text, text, 0);
            let detail = format!(
                "declared {:?}, {} clear characters",
                field.style,
                text.chars().filter(|c| c.is_alphanumeric()).count()
            );
            self.push(
                Cow::Borrowed("data.masking_ineffective"),
                Severity::High,
                &location,
                evidence,
                Some(detail),
            );
        }
    }

    /// All detectors over one value.
    fn value(&mut self, bytes: &[u8], key: Option<&str>, location: &Location) {
        let bytes = &bytes[..bytes.len().min(MAX_VALUE_BYTES)];
        let text = String::from_utf8_lossy(bytes);
        if let Some(key) = key
            && let Some((kind, class, severity)) = builtin::by_field_name(key, &text)
        {
            let evidence = self.evidence(class, &text, &text, 0);
            self.push(Cow::Borrowed(kind), severity, location, evidence, None);
        }
        let context = Context {
            key,
            internal_ips: self.direction == Direction::Response,
        };
        let remaining = MAX_DETECTIONS.saturating_sub(self.out.len());
        for hit in self.scanner.builtin.scan(bytes, context, remaining) {
            let raw = String::from_utf8_lossy(&bytes[hit.start..hit.end]);
            let at = located(location, hit.start);
            let evidence = self.evidence(hit.class, &raw, &hit.normalized, hit.reveal);
            self.push(Cow::Borrowed(hit.kind), hit.severity, &at, evidence, None);
            if hit.kind == "data.jwt" {
                self.token(&raw, &at);
            }
        }
        self.custom(&text, key, location);
    }

    /// Hygiene of a JWT found at `location`, and PII among its claims.
    fn token(&mut self, token: &str, location: &Location) {
        let Ok(decoded) = jwt::decode(token) else {
            return;
        };
        for problem in jwt::check(&decoded, self.token_use) {
            let evidence = self.evidence(DataClass::Secret, token, token, 4);
            self.push(
                Cow::Borrowed(problem.kind),
                problem.severity,
                location,
                evidence,
                Some(problem.detail),
            );
        }
        let claims = Value::Object(decoded.claims);
        let mut found = Vec::new();
        let mut claim_pass = Pass {
            scanner: self.scanner,
            declared: &[],
            direction: self.direction,
            token_use: self.token_use,
            out: &mut found,
        };
        claim_pass.json(&claims);
        for detection in found
            .into_iter()
            .filter(|d| d.evidence.class == DataClass::Pii)
        {
            let claim = match &detection.location {
                Location::Json { pointer } => pointer.clone(),
                other => other.to_string(),
            };
            self.push(
                Cow::Borrowed("auth.jwt_pii_claims"),
                Severity::Medium,
                location,
                detection.evidence,
                Some(format!("claim {claim}: {}", detection.kind)),
            );
        }
    }

    fn custom(&mut self, text: &str, key: Option<&str>, location: &Location) {
        let custom = &self.scanner.custom;
        let key_lower = key.map(str::to_ascii_lowercase);
        for detector in &custom.detectors {
            let in_field = key_lower
                .as_ref()
                .is_some_and(|key| detector.fields.contains(key));
            let regex_ok = detector
                .regex
                .as_ref()
                .is_none_or(|regex| regex.is_match(text));
            if in_field
                && regex_ok
                && detector.validator.accepts(text)
                && !builtin::placeholder(text)
            {
                let evidence = self.evidence(detector.class, text, text, 0);
                self.push(
                    Cow::Owned(detector.kind.clone()),
                    detector.severity,
                    location,
                    evidence,
                    None,
                );
            }
        }
        for pattern in custom.prefilter.matches(text).iter() {
            let detector = &custom.detectors[custom.pattern_owner[pattern]];
            let Some(regex) = &detector.regex else {
                continue;
            };
            if key_lower
                .as_ref()
                .is_some_and(|key| detector.fields.contains(key))
            {
                // Already judged above as a field value.
                continue;
            }
            for found in regex.find_iter(text).take(MAX_DETECTIONS) {
                let keyword_near = detector.keywords.is_empty()
                    || key_lower.as_ref().is_some_and(|key| {
                        detector.keywords.iter().any(|k| key.contains(k.as_str()))
                    })
                    || detector.keywords.iter().any(|k| {
                        builtin::window_contains(
                            text.as_bytes(),
                            found.start(),
                            found.end(),
                            k,
                            detector.window,
                        )
                    });
                if keyword_near && detector.validator.accepts(found.as_str()) {
                    let evidence = self.evidence(detector.class, found.as_str(), found.as_str(), 0);
                    self.push(
                        Cow::Owned(detector.kind.clone()),
                        detector.severity,
                        &located(location, found.start()),
                        evidence,
                        None,
                    );
                }
            }
        }
    }
}

/// A match's location: its offset when the value is a whole text body, else the value's place.
fn located(location: &Location, offset: usize) -> Location {
    match location {
        Location::Text { offset: base } => Location::Text {
            offset: base + offset,
        },
        other => other.clone(),
    }
}

/// `a=1&b=x%20y` as percent-decoded (name, value) pairs, `+` as space, at most
/// [`MAX_QUERY_PARAMS`].
fn form_pairs(text: &str) -> Vec<(String, String)> {
    let decode = |part: &str| {
        percent_decode_str(&part.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .take(MAX_QUERY_PARAMS)
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}
