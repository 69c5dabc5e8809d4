//! The inventory's `apis:` section: which OpenAPI spec describes which service, how its
//! servers are recognised, and what each kind of finding does.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use intelligence::{FindingKind, Severity, finding::Mode};
use ipnetwork::IpNetwork;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ApiSpec {
    name: String,
    spec: String,
    servers: Vec<ServerSpec>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    kinds: BTreeMap<String, Mode>,
    #[serde(default)]
    severities: BTreeMap<String, Severity>,
    unused_after: Option<String>,
    block_for: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSpec {
    address: Option<String>,
    port: Option<u16>,
    host: Option<String>,
    service: Option<ServiceRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
}

/// Calls to a server that matches every criterion given (address, port, host, service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMatch {
    pub address: Option<IpNetwork>,
    pub port: Option<u16>,
    /// Compared with the request's authority without its port, ignoring case.
    pub host: Option<String>,
    pub service: Option<ServiceRef>,
}

/// The server end of a call, as far as matching needs it.
#[derive(Debug, Clone, Copy)]
pub struct Server<'a> {
    pub ip: IpAddr,
    pub port: u16,
    pub authority: Option<&'a str>,
    /// (namespace, name) of the Kubernetes service the server is part of.
    pub service: Option<(&'a str, &'a str)>,
}

impl ServerMatch {
    pub fn matches(&self, server: &Server<'_>) -> bool {
        let host = server.authority.map(|authority| {
            // `[v6]:port`, `host:port` or `host`.
            match authority.strip_prefix('[') {
                Some(rest) => rest.split(']').next().unwrap_or_default(),
                None => authority
                    .rsplit_once(':')
                    .map_or(authority, |(host, _)| host),
            }
        });
        self.address
            .is_none_or(|network| network.contains(server.ip))
            && self.port.is_none_or(|port| port == server.port)
            && self
                .host
                .as_deref()
                .is_none_or(|wanted| host.is_some_and(|host| host.eq_ignore_ascii_case(wanted)))
            && self.service.as_ref().is_none_or(|wanted| {
                server.service == Some((wanted.namespace.as_str(), wanted.name.as_str()))
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiBinding {
    /// The service name its calls, endpoints and findings carry.
    pub name: Arc<str>,
    /// The spec file, resolved against the inventory file's directory.
    pub spec: PathBuf,
    pub servers: Vec<ServerMatch>,
    pub mode: Mode,
    pub modes: HashMap<FindingKind, Mode>,
    pub severities: HashMap<FindingKind, Severity>,
    pub unused_after: Duration,
    /// How long a source stays blocked after a finding in block mode.
    pub block_for: Duration,
}

impl ApiBinding {
    pub fn serves(&self, server: &Server<'_>) -> bool {
        self.servers
            .iter()
            .any(|candidate| candidate.matches(server))
    }
}

/// Defaults a team can live with: zombie endpoints after a day of silence, blocks for ten
/// minutes (long enough to stop a probe, short enough that a mistake heals itself).
const DEFAULT_UNUSED_AFTER: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_BLOCK_FOR: Duration = Duration::from_secs(600);

fn kind_named(name: &str) -> Result<FindingKind, String> {
    FindingKind::parse(name).ok_or_else(|| {
        let known: Vec<&str> = FindingKind::ALL.iter().map(|kind| kind.as_str()).collect();
        format!(
            "{name:?} is not a finding kind; use one of {}",
            known.join(", ")
        )
    })
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|error| format!("{text:?} is not a duration like 30m or 24h: {error}"))
}

/// Validates the section; `error(field, message)` locates a problem in the file.
pub(crate) fn bindings<E>(
    specs: Vec<ApiSpec>,
    origin: &Path,
    error: impl Fn(String, String) -> E,
) -> Result<Vec<ApiBinding>, E> {
    let directory = origin.parent().unwrap_or(Path::new(""));
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(specs.len());
    for (position, spec) in specs.into_iter().enumerate() {
        let field = |name: &str| format!("apis[{position}].{name}");
        if spec.name.trim().is_empty() {
            return Err(error(
                field("name"),
                "an API needs a name: its calls and findings carry it".to_owned(),
            ));
        }
        if let Some(other) = names.insert(spec.name.clone(), position) {
            return Err(error(
                field("name"),
                format!("apis[{other}] is already named {:?}", spec.name),
            ));
        }
        if spec.spec.trim().is_empty() {
            return Err(error(
                field("spec"),
                "give the OpenAPI file, relative to this file".to_owned(),
            ));
        }
        if spec.servers.is_empty() {
            return Err(error(
                field("servers"),
                "name at least one server (address, port, host or service) that serves this API"
                    .to_owned(),
            ));
        }
        let mut servers = Vec::with_capacity(spec.servers.len());
        for (index, server) in spec.servers.into_iter().enumerate() {
            let server_field = |name: &str| format!("apis[{position}].servers[{index}].{name}");
            if server.address.is_none()
                && server.port.is_none()
                && server.host.is_none()
                && server.service.is_none()
            {
                return Err(error(
                    format!("apis[{position}].servers[{index}]"),
                    "a server needs at least one of address, port, host or service".to_owned(),
                ));
            }
            let address = match server.address {
                Some(text) => Some(
                    policy::parse_cidr(&text)
                        .map_err(|cause| error(server_field("address"), cause.to_string()))?,
                ),
                None => None,
            };
            servers.push(ServerMatch {
                address,
                port: server.port,
                host: server.host,
                service: server.service,
            });
        }
        let mut modes = HashMap::new();
        for (name, mode) in spec.kinds {
            let kind = kind_named(&name)
                .map_err(|message| error(format!("apis[{position}].kinds.{name}"), message))?;
            if mode == Mode::Block && !kind.is_about_the_request() {
                return Err(error(
                    format!("apis[{position}].kinds.{name}"),
                    format!(
                        "{name} cannot block: it is about the server's response or the inventory, not the caller's request; use detect or off"
                    ),
                ));
            }
            modes.insert(kind, mode);
        }
        let mut severities = HashMap::new();
        for (name, severity) in spec.severities {
            let kind = kind_named(&name)
                .map_err(|message| error(format!("apis[{position}].severities.{name}"), message))?;
            severities.insert(kind, severity);
        }
        let unused_after = match spec.unused_after {
            Some(text) => {
                duration(&text).map_err(|message| error(field("unusedAfter"), message))?
            }
            None => DEFAULT_UNUSED_AFTER,
        };
        let block_for = match spec.block_for {
            Some(text) => duration(&text).map_err(|message| error(field("blockFor"), message))?,
            None => DEFAULT_BLOCK_FOR,
        };
        if block_for < Duration::from_secs(1) {
            return Err(error(
                field("blockFor"),
                "blocks last at least one second".to_owned(),
            ));
        }
        out.push(ApiBinding {
            name: Arc::from(spec.name),
            spec: directory.join(spec.spec),
            servers,
            mode: spec.mode,
            modes,
            severities,
            unused_after,
            block_for,
        });
    }
    Ok(out)
}
