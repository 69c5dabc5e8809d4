//! Which OpenAPI spec describes which service, how its servers are recognised, and what each
//! kind of finding does: the inventory's `apis:` section, and the `moat.dev/openapi`
//! annotations of Kubernetes Services.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use intelligence::{FindingKind, Severity, finding::Mode};
use ipnetwork::IpNetwork;
use serde::{Deserialize, de::IntoDeserializer as _};

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

/// A key of a ConfigMap: where an annotated Service's spec is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConfigMapKey {
    pub namespace: String,
    pub name: String,
    pub key: String,
}

/// Where a bound API's spec is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecLocation {
    /// A file, resolved against the inventory file's directory.
    File(PathBuf),
    /// A ConfigMap's key; its other keys are the files the spec's `$ref`s may name.
    ConfigMap(ConfigMapKey),
}

impl fmt::Display for SpecLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::ConfigMap(ConfigMapKey {
                namespace,
                name,
                key,
            }) => write!(f, "configmap {namespace}/{name}/{key}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiBinding {
    /// The service name its calls, endpoints and findings carry.
    pub name: Arc<str>,
    pub spec: SpecLocation,
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

fn block_duration(text: &str) -> Result<Duration, String> {
    let block_for = duration(text)?;
    if block_for < Duration::from_secs(1) {
        return Err("blocks last at least one second".to_owned());
    }
    Ok(block_for)
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
            Some(text) => {
                block_duration(&text).map_err(|message| error(field("blockFor"), message))?
            }
            None => DEFAULT_BLOCK_FOR,
        };
        out.push(ApiBinding {
            name: Arc::from(spec.name),
            spec: SpecLocation::File(directory.join(spec.spec)),
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

/// Binds the spec in a ConfigMap key to the Service it annotates:
/// `<configmap>/<key>` (the Service's namespace) or `<namespace>/<configmap>/<key>`.
pub const OPENAPI_ANNOTATION: &str = "moat.dev/openapi";
/// `off`, `detect` (the default) or `block`, for every `spec.*` kind.
pub const MODE_ANNOTATION: &str = "moat.dev/openapi-mode";
/// The zombie window, like the inventory's `unusedAfter`.
pub const UNUSED_AFTER_ANNOTATION: &str = "moat.dev/openapi-unused-after";
/// How long block mode drops a source, like the inventory's `blockFor`.
pub const BLOCK_FOR_ANNOTATION: &str = "moat.dev/openapi-block-for";

/// What a Service's `moat.dev/openapi*` annotations bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotatedApi {
    /// None when the `moat.dev/openapi` reference itself is unusable.
    pub binding: Option<ApiBinding>,
    /// Each annotation that is wrong, and why. A wrong optional annotation leaves its default in
    /// use rather than unbinding the spec: a typo in a mode should not silence the checks.
    pub problems: Vec<String>,
}

/// The API a Service's annotations bind, or None without a `moat.dev/openapi` annotation. The
/// API is named `<namespace>/<service>`, the name calls to the service already carry.
pub fn annotated(
    namespace: &str,
    service: &str,
    annotations: &BTreeMap<String, String>,
) -> Option<AnnotatedApi> {
    let reference = annotations.get(OPENAPI_ANNOTATION)?;
    let mut problems = Vec::new();
    let mut optional = Optional {
        annotations,
        problems: &mut problems,
    };
    let mode = optional.value(MODE_ANNOTATION, Mode::default(), mode_named);
    let unused_after = optional.value(UNUSED_AFTER_ANNOTATION, DEFAULT_UNUSED_AFTER, duration);
    let block_for = optional.value(BLOCK_FOR_ANNOTATION, DEFAULT_BLOCK_FOR, block_duration);
    let binding = match config_map_reference(namespace, reference) {
        Ok(key) => Some(ApiBinding {
            name: Arc::from(format!("{namespace}/{service}")),
            spec: SpecLocation::ConfigMap(key),
            servers: vec![ServerMatch {
                address: None,
                port: None,
                host: None,
                service: Some(ServiceRef {
                    namespace: namespace.to_owned(),
                    name: service.to_owned(),
                }),
            }],
            mode,
            modes: HashMap::new(),
            severities: HashMap::new(),
            unused_after,
            block_for,
        }),
        Err(message) => {
            problems.insert(0, format!("{OPENAPI_ANNOTATION}: {message}"));
            None
        }
    };
    Some(AnnotatedApi { binding, problems })
}

/// Optional annotations, each its value or, when absent or wrong, its default.
struct Optional<'a> {
    annotations: &'a BTreeMap<String, String>,
    problems: &'a mut Vec<String>,
}

impl Optional<'_> {
    fn value<T>(
        &mut self,
        annotation: &str,
        default: T,
        parse: fn(&str) -> Result<T, String>,
    ) -> T {
        match self
            .annotations
            .get(annotation)
            .map(|text| parse(text.trim()))
        {
            Some(Ok(value)) => value,
            Some(Err(message)) => {
                self.problems
                    .push(format!("{annotation}: {message}; the default is used"));
                default
            }
            None => default,
        }
    }
}

/// Through serde, so the annotation accepts exactly what the inventory's `mode:` does.
fn mode_named(text: &str) -> Result<Mode, String> {
    Mode::deserialize(text.into_deserializer())
        .map_err(|error: serde::de::value::Error| error.to_string())
}

fn config_map_reference(namespace: &str, text: &str) -> Result<ConfigMapKey, String> {
    let parts: Vec<&str> = text.trim().split('/').collect();
    let (namespace, name, key) = match parts.as_slice() {
        [name, key] => (namespace, *name, *key),
        [namespace, name, key] => (*namespace, *name, *key),
        _ => {
            return Err(format!(
                "{text:?} is not <configmap>/<key> or <namespace>/<configmap>/<key>"
            ));
        }
    };
    // The API server's own rules: a reference that breaks them can never name anything.
    let dns = |what: &str, value: &str, max: usize, dots: bool| {
        let valid = !value.is_empty()
            && value.len() <= max
            && value.bytes().all(|byte| {
                byte.is_ascii_lowercase()
                    || byte.is_ascii_digit()
                    || byte == b'-'
                    || (dots && byte == b'.')
            })
            && value
                .bytes()
                .next()
                .is_some_and(|byte| byte.is_ascii_alphanumeric())
            && value
                .bytes()
                .last()
                .is_some_and(|byte| byte.is_ascii_alphanumeric());
        if valid {
            Ok(())
        } else {
            Err(format!("{value:?} is not a valid {what} name"))
        }
    };
    dns("namespace", namespace, 63, false)?;
    dns("ConfigMap", name, 253, true)?;
    let valid_key = !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    if !valid_key {
        return Err(format!(
            "{key:?} is not a valid ConfigMap key (letters, digits, '-', '_' and '.')"
        ));
    }
    Ok(ConfigMapKey {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        key: key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn a_service_annotation_binds_a_configmap_key_to_the_service() {
        assert_eq!(annotated("shop", "pets", &BTreeMap::new()), None);
        let api = annotated(
            "shop",
            "pets",
            &annotations(&[
                (OPENAPI_ANNOTATION, "pets-spec/openapi.yaml"),
                (MODE_ANNOTATION, "block"),
                (UNUSED_AFTER_ANNOTATION, "2h"),
                (BLOCK_FOR_ANNOTATION, "30s"),
            ]),
        )
        .expect("annotated");
        assert_eq!(api.problems, Vec::<String>::new());
        let binding = api.binding.expect("bound");
        assert_eq!(&*binding.name, "shop/pets");
        assert_eq!(
            binding.spec.to_string(),
            "configmap shop/pets-spec/openapi.yaml"
        );
        assert_eq!(binding.mode, Mode::Block);
        assert_eq!(binding.unused_after, Duration::from_secs(7200));
        assert_eq!(binding.block_for, Duration::from_secs(30));
        let server = |service| Server {
            ip: "10.0.0.1".parse().expect("ip"),
            port: 80,
            authority: None,
            service,
        };
        assert!(binding.serves(&server(Some(("shop", "pets")))));
        assert!(!binding.serves(&server(Some(("other", "pets")))));
        assert!(!binding.serves(&server(None)));

        let elsewhere = annotated(
            "shop",
            "pets",
            &annotations(&[(OPENAPI_ANNOTATION, " specs/pets-spec.v1/pets.json ")]),
        )
        .and_then(|api| api.binding)
        .expect("bound");
        assert_eq!(
            elsewhere.spec,
            SpecLocation::ConfigMap(ConfigMapKey {
                namespace: "specs".to_owned(),
                name: "pets-spec.v1".to_owned(),
                key: "pets.json".to_owned(),
            })
        );
        assert_eq!(elsewhere.mode, Mode::Detect);
        assert_eq!(elsewhere.unused_after, DEFAULT_UNUSED_AFTER);
        assert_eq!(elsewhere.block_for, DEFAULT_BLOCK_FOR);
    }

    #[test]
    fn a_bad_optional_annotation_is_reported_and_its_default_used() {
        let api = annotated(
            "shop",
            "pets",
            &annotations(&[
                (OPENAPI_ANNOTATION, "pets-spec/openapi.yaml"),
                (MODE_ANNOTATION, "blok"),
                (UNUSED_AFTER_ANNOTATION, "soon"),
                (BLOCK_FOR_ANNOTATION, "10ms"),
            ]),
        )
        .expect("annotated");
        let binding = api.binding.expect("still bound");
        assert_eq!(binding.mode, Mode::Detect);
        assert_eq!(binding.unused_after, DEFAULT_UNUSED_AFTER);
        assert_eq!(binding.block_for, DEFAULT_BLOCK_FOR);
        assert_eq!(api.problems.len(), 3, "{:?}", api.problems);
        assert!(
            api.problems[0].starts_with("moat.dev/openapi-mode: unknown variant `blok`")
                && api.problems[0].contains("`detect`")
                && api.problems[0].ends_with("; the default is used"),
            "{}",
            api.problems[0]
        );
        assert!(api.problems[1].starts_with("moat.dev/openapi-unused-after: \"soon\""));
        assert!(api.problems[2].contains("at least one second"));
    }

    #[test]
    fn an_unusable_reference_binds_nothing_and_says_why() {
        for (reference, complaint) in [
            ("openapi.yaml", "is not <configmap>/<key>"),
            ("a/b/c/d", "is not <configmap>/<key>"),
            ("Pets/openapi.yaml", "not a valid ConfigMap name"),
            ("-pets/openapi.yaml", "not a valid ConfigMap name"),
            ("shop_x/pets/openapi.yaml", "not a valid namespace name"),
            ("pets/", "not a valid ConfigMap key"),
            ("pets/..", "not a valid ConfigMap key"),
            ("pets/open api.yaml", "not a valid ConfigMap key"),
        ] {
            let api = annotated(
                "shop",
                "pets",
                &annotations(&[(OPENAPI_ANNOTATION, reference), (MODE_ANNOTATION, "off")]),
            )
            .expect("annotated");
            assert_eq!(api.binding, None, "{reference}");
            assert_eq!(api.problems.len(), 1, "{reference}: {:?}", api.problems);
            assert!(
                api.problems[0].starts_with("moat.dev/openapi: ")
                    && api.problems[0].contains(complaint),
                "{reference}: {}",
                api.problems[0]
            );
        }
    }
}
