//! From policy text (and the blocklist files it names) to a validated [`Policy`].

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    path::{Path, PathBuf},
};

use agent_common::policy::{MAX_RATE_LIMITS, MAX_RULES};
use ipnetwork::IpNetwork;
use thiserror::Error;

use crate::{
    cidr::parse_cidr,
    locate::Locations,
    model::{Action, Identity, PodSelector, Policy, Protocol, RateLimit, Rule, Selector},
    schema::{ActionSpec, PolicyFile, ProtocolSpec},
    selector::LabelSelector,
};

/// What is wrong, and where: `policy.yaml:12:13: rules[0].to: ...`.
#[derive(Debug, Error, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    /// 1-based, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The field, in the policy's own notation (`rules[0].to`).
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Reads and validates the policy file at `path`, and the blocklist files it names (relative to
/// its directory).
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    load_with(path, &|file| std::fs::read_to_string(file))
}

/// As [`load`], with `read` supplying every file: the policy and the blocklists it names (so a
/// caller can watch exactly what was read).
pub fn load_with(
    path: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Policy, PolicyError> {
    let text = read(path).map_err(|error| PolicyError {
        file: path.to_owned(),
        line: None,
        column: None,
        field: None,
        message: format!("cannot read the policy file: {error}"),
    })?;
    parse(&text, path, read)
}

/// Validates policy `text` that came from `origin`; `read` supplies the blocklist files.
pub fn parse(
    text: &str,
    origin: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Policy, PolicyError> {
    let file: PolicyFile = if text.trim().is_empty() {
        PolicyFile::default()
    } else {
        deserialize_located(text, origin)?
    };
    Validator {
        origin,
        locations: Locations::of(text),
    }
    .validate(file, read)
}

/// Deserializes YAML `text` that came from `origin`, with an error naming the line, column and
/// field that does not fit `T`. Other Moat files (the inventory) share the policy's error form.
pub fn deserialize_located<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &Path,
) -> Result<T, PolicyError> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let field = error.path().to_string();
        let location = error.inner().location();
        let message = strip_location(&error.inner().to_string());
        // serde_yaml starts its message with the path too; say it once.
        let message = message
            .strip_prefix(&format!("{field}: "))
            .map(str::to_owned)
            .unwrap_or(message);
        PolicyError {
            file: origin.to_owned(),
            line: location.as_ref().map(|location| location.line()),
            column: location.as_ref().map(|location| location.column()),
            field: (field != ".").then_some(field),
            message,
        }
    })
}

/// serde_yaml appends " at line L column C" to its messages; the error carries those already.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

struct Validator<'a> {
    origin: &'a Path,
    locations: Locations,
}

const RESERVED_NAMES: [&str; 2] = ["world", "any"];

impl Validator<'_> {
    fn error(&self, field: String, message: String) -> PolicyError {
        let location = self.locations.nearest(&field);
        PolicyError {
            file: self.origin.to_owned(),
            line: location.map(|(line, _)| line),
            column: location.map(|(_, column)| column),
            field: Some(field),
            message,
        }
    }

    fn validate(
        &self,
        file: PolicyFile,
        read: &dyn Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Policy, PolicyError> {
        let mut identities = self.identities(&file.identities)?;
        let index_of: HashMap<String, usize> = identities
            .iter()
            .enumerate()
            .map(|(index, identity)| (identity.name.clone(), index))
            .collect();
        let resolve = |field: String, name: &str| -> Result<Selector, PolicyError> {
            match name {
                "world" => Ok(Selector::World),
                "any" => Ok(Selector::Any),
                _ => index_of
                    .get(name)
                    .map(|&index| Selector::Identity(index))
                    .ok_or_else(|| {
                        let mut known: Vec<&str> = index_of.keys().map(String::as_str).collect();
                        known.sort_unstable();
                        known.extend(RESERVED_NAMES);
                        self.error(
                            field,
                            format!("no identity named {name:?}; known: {}", known.join(", ")),
                        )
                    }),
            }
        };

        let blocklist = self.blocklist(&file, read)?;
        let rules = self.rules(&file, &resolve)?;

        for (position, name) in file.isolate.iter().enumerate() {
            let field = format!("isolate[{position}]");
            match resolve(field.clone(), name)? {
                Selector::Identity(index) => identities[index].isolated = true,
                Selector::World | Selector::Any => {
                    return Err(self.error(
                        field,
                        format!("only named identities can be isolated, not {name:?}"),
                    ));
                }
            }
        }

        let rate_limits = self.rate_limits(&file, &resolve)?;
        Ok(Policy {
            identities,
            blocklist,
            rules,
            rate_limits,
        })
    }

    fn identities(
        &self,
        specs: &BTreeMap<String, crate::schema::IdentitySpec>,
    ) -> Result<Vec<Identity>, PolicyError> {
        let mut owner_of_cidr: HashMap<IpNetwork, &str> = HashMap::new();
        let mut identities = Vec::with_capacity(specs.len());
        for (name, spec) in specs {
            let field = format!("identities.{name}");
            if RESERVED_NAMES.contains(&name.as_str()) {
                return Err(self.error(field, format!("{name:?} is reserved; pick another name")));
            }
            let valid_name = name
                .chars()
                .next()
                .is_some_and(|first| first.is_ascii_alphanumeric())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid_name {
                return Err(self.error(
                    field,
                    "identity names start with a letter or digit and use letters, digits, '-', '_' and '.'"
                        .to_owned(),
                ));
            }
            if spec.cidrs.is_empty() && spec.selector.is_none() && spec.namespace_selector.is_none()
            {
                return Err(self.error(
                    format!("{field}.cidrs"),
                    "an identity needs at least one CIDR, a pod `selector` or a `namespaceSelector`".to_owned(),
                ));
            }
            let pods = self.pod_selector(&field, spec)?;
            let mut cidrs = Vec::with_capacity(spec.cidrs.len());
            for (position, text) in spec.cidrs.iter().enumerate() {
                let cidr_field = format!("{field}.cidrs[{position}]");
                let cidr = parse_cidr(text)
                    .map_err(|error| self.error(cidr_field.clone(), error.to_string()))?;
                if let Some(other) = owner_of_cidr.insert(cidr, name) {
                    return Err(self.error(
                        cidr_field,
                        format!(
                            "{cidr} is already in identity {other:?}; an address must resolve to one identity"
                        ),
                    ));
                }
                cidrs.push(cidr);
            }
            identities.push(Identity {
                name: name.clone(),
                cidrs,
                isolated: false,
                pods,
            });
        }
        Ok(identities)
    }

    fn pod_selector(
        &self,
        field: &str,
        spec: &crate::schema::IdentitySpec,
    ) -> Result<Option<PodSelector>, PolicyError> {
        if spec.selector.is_none() && spec.namespace_selector.is_none() {
            return Ok(None);
        }
        let mut selector = PodSelector::default();
        if let Some(namespaces) = &spec.namespace_selector {
            namespaces.validate().map_err(|(part, message)| {
                self.error(format!("{field}.namespaceSelector.{part}"), message)
            })?;
            selector.namespaces = Some(namespaces.clone());
        }
        if let Some(pods) = &spec.selector {
            if let Some(namespace) = &pods.namespace {
                let valid = !namespace.is_empty()
                    && namespace.len() <= 63
                    && namespace
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !namespace.starts_with('-')
                    && !namespace.ends_with('-');
                if !valid {
                    return Err(self.error(
                        format!("{field}.selector.namespace"),
                        format!("{namespace:?} is not a namespace name: 1 to 63 lower-case letters, digits and '-'"),
                    ));
                }
            }
            let labels = LabelSelector {
                match_labels: pods.match_labels.clone(),
                match_expressions: pods.match_expressions.clone(),
            };
            labels.validate().map_err(|(part, message)| {
                self.error(format!("{field}.selector.{part}"), message)
            })?;
            selector.namespace = pods.namespace.clone();
            selector.labels = Some(labels);
        }
        Ok(Some(selector))
    }

    fn blocklist(
        &self,
        file: &PolicyFile,
        read: &dyn Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Vec<IpNetwork>, PolicyError> {
        let mut blocklist = Vec::new();
        for (position, text) in file.blocklist.cidrs.iter().enumerate() {
            let field = format!("blocklist.cidrs[{position}]");
            blocklist.push(parse_cidr(text).map_err(|error| self.error(field, error.to_string()))?);
        }
        let directory = self.origin.parent().unwrap_or(Path::new("."));
        for (position, name) in file.blocklist.files.iter().enumerate() {
            let path = directory.join(name);
            let text = read(&path).map_err(|error| {
                self.error(
                    format!("blocklist.files[{position}]"),
                    format!("cannot read {}: {error}", path.display()),
                )
            })?;
            for (number, line) in text.lines().enumerate() {
                let entry = line.split('#').next().unwrap_or("").trim();
                if entry.is_empty() {
                    continue;
                }
                let cidr = parse_cidr(entry).map_err(|error| PolicyError {
                    file: path.clone(),
                    line: Some(number + 1),
                    column: None,
                    field: None,
                    message: error.to_string(),
                })?;
                blocklist.push(cidr);
            }
        }
        blocklist.sort_unstable();
        blocklist.dedup();
        Ok(blocklist)
    }

    fn rules(
        &self,
        file: &PolicyFile,
        resolve: &dyn Fn(String, &str) -> Result<Selector, PolicyError>,
    ) -> Result<Vec<Rule>, PolicyError> {
        if file.rules.len() > MAX_RULES as usize {
            return Err(self.error(
                "rules".to_owned(),
                format!(
                    "{} rules; at most {MAX_RULES} fit the kernel's counters",
                    file.rules.len()
                ),
            ));
        }
        let mut names = HashSet::new();
        let mut rules = Vec::with_capacity(file.rules.len());
        for (position, spec) in file.rules.iter().enumerate() {
            let field = |name: &str| format!("rules[{position}].{name}");
            if spec.name.trim().is_empty() {
                return Err(self.error(field("name"), "a rule needs a name".to_owned()));
            }
            if !names.insert(spec.name.as_str()) {
                return Err(self.error(
                    field("name"),
                    format!("another rule is already named {:?}; names identify rules in counters and events", spec.name),
                ));
            }
            let protocol = match spec.protocol {
                ProtocolSpec::Tcp => Protocol::Tcp,
                ProtocolSpec::Udp => Protocol::Udp,
                ProtocolSpec::Icmp => Protocol::Icmp,
                ProtocolSpec::Any => Protocol::Any,
            };
            if protocol == Protocol::Icmp && !spec.ports.is_empty() {
                return Err(self.error(
                    field("ports"),
                    "ICMP has no ports; remove `ports` or use protocol tcp, udp or any".to_owned(),
                ));
            }
            if let Some(zero) = spec.ports.iter().position(|&port| port == 0) {
                return Err(self.error(
                    format!("rules[{position}].ports[{zero}]"),
                    "port 0 is not a destination port; ports are 1 to 65535".to_owned(),
                ));
            }
            let mut ports = spec.ports.clone();
            ports.sort_unstable();
            ports.dedup();
            rules.push(Rule {
                name: spec.name.clone(),
                action: match spec.action {
                    ActionSpec::Allow => Action::Allow,
                    ActionSpec::Deny => Action::Deny,
                },
                from: resolve(field("from"), &spec.from)?,
                to: resolve(field("to"), &spec.to)?,
                protocol,
                ports,
            });
        }
        Ok(rules)
    }

    fn rate_limits(
        &self,
        file: &PolicyFile,
        resolve: &dyn Fn(String, &str) -> Result<Selector, PolicyError>,
    ) -> Result<Vec<RateLimit>, PolicyError> {
        if file.rate_limits.len() > MAX_RATE_LIMITS as usize {
            return Err(self.error(
                "rateLimits".to_owned(),
                format!(
                    "{} rate limits; at most {MAX_RATE_LIMITS}",
                    file.rate_limits.len()
                ),
            ));
        }
        let mut names = HashSet::new();
        let mut limited = HashSet::new();
        let mut rate_limits = Vec::with_capacity(file.rate_limits.len());
        for (position, spec) in file.rate_limits.iter().enumerate() {
            let field = |name: &str| format!("rateLimits[{position}].{name}");
            if spec.name.trim().is_empty() || !names.insert(spec.name.as_str()) {
                return Err(self.error(
                    field("name"),
                    "each rate limit needs a name of its own".to_owned(),
                ));
            }
            let to = resolve(field("to"), &spec.to)?;
            if to == Selector::Any {
                return Err(self.error(
                    field("to"),
                    "a rate limit protects one identity (or world), not any".to_owned(),
                ));
            }
            if !limited.insert(to) {
                return Err(self.error(
                    field("to"),
                    format!(
                        "{:?} already has a rate limit; one per destination",
                        spec.to
                    ),
                ));
            }
            let per_source = &spec.per_source;
            if !(1..=1_000_000_000).contains(&per_source.packets_per_second) {
                return Err(self.error(
                    field("perSource.packetsPerSecond"),
                    "must be between 1 and 1000000000".to_owned(),
                ));
            }
            if !(1..=1_000_000_000).contains(&per_source.burst) {
                return Err(self.error(
                    field("perSource.burst"),
                    "must be between 1 and 1000000000 packets".to_owned(),
                ));
            }
            rate_limits.push(RateLimit {
                name: spec.name.clone(),
                to,
                packets_per_second: per_source.packets_per_second,
                burst: per_source.burst,
            });
        }
        Ok(rate_limits)
    }
}
