//! The inventory file (`--inventory`): which cluster and environment this is, the address ranges
//! the operator knows (pod, service and node networks, other clusters, partners, customers,
//! scanners) and rules that tag workloads. The same file serves standalone hosts and Kubernetes,
//! where the agent adds the ranges it learns.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
};

use ipnetwork::IpNetwork;
use policy::{
    PolicyError,
    locate::Locations,
    parse_cidr,
    selector::{LabelSelector, Labels},
};
use serde::{Deserialize, Serialize};

use crate::{Kind, tags::Tags};

/// What a range is. Ranges of the first five kinds are internal: traffic to them stays in the
/// organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RangeKind {
    PodNetwork,
    ServiceNetwork,
    NodeNetwork,
    OtherCluster,
    /// Any other address space of the organisation (offices, VPN, data centres).
    Internal,
    Partner,
    Customer,
    Scanner,
}

impl RangeKind {
    pub fn is_internal(self) -> bool {
        matches!(
            self,
            Self::PodNetwork
                | Self::ServiceNetwork
                | Self::NodeNetwork
                | Self::OtherCluster
                | Self::Internal
        )
    }
}

/// Environments, as the `moat.dev/environment` label and the inventory name them.
pub const ENVIRONMENTS: [&str; 4] = ["dev", "test", "staging", "production"];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    pub cluster: Option<Arc<str>>,
    pub environment: Option<Arc<str>>,
    pub ranges: Vec<DeclaredRange>,
    /// In file order; a later rule's tag overrides an earlier one's.
    pub tag_rules: Vec<TagRule>,
    /// OpenAPI specs bound to the services that serve them.
    pub apis: Vec<crate::apis::ApiBinding>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredRange {
    pub name: Arc<str>,
    pub kind: RangeKind,
    pub cidrs: Vec<IpNetwork>,
    pub customer: Option<Arc<str>>,
    pub environment: Option<Arc<str>>,
    /// Includes `owner` when the range names one.
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagRule {
    pub namespace: Option<String>,
    /// Over the labels of the pod, service or node.
    pub selector: Option<LabelSelector>,
    /// Empty: every kind.
    pub kinds: Vec<Kind>,
    pub tags: Tags,
}

impl TagRule {
    pub fn applies(&self, kind: Kind, namespace: Option<&str>, labels: &impl Labels) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&kind))
            && self
                .namespace
                .as_deref()
                .is_none_or(|wanted| namespace == Some(wanted))
            && self
                .selector
                .as_ref()
                .is_none_or(|selector| selector.matches(labels))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InventoryFile {
    cluster: Option<String>,
    environment: Option<String>,
    #[serde(default)]
    ranges: Vec<RangeSpec>,
    #[serde(default)]
    tag_rules: Vec<TagRuleSpec>,
    #[serde(default)]
    apis: Vec<crate::apis::ApiSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeSpec {
    name: String,
    kind: RangeKind,
    cidrs: Vec<String>,
    owner: Option<String>,
    customer: Option<String>,
    environment: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagRuleSpec {
    namespace: Option<String>,
    selector: Option<LabelSelector>,
    #[serde(default)]
    kinds: Vec<RuleKind>,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RuleKind {
    Pod,
    Service,
    Node,
}

/// Reads and validates the inventory at `path`, with `read` supplying the file (so a caller can
/// watch what was read).
pub fn load_with(
    path: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Inventory, PolicyError> {
    let text = read(path).map_err(|error| PolicyError {
        file: path.to_owned(),
        line: None,
        column: None,
        field: None,
        message: format!("cannot read the inventory file: {error}"),
    })?;
    parse(&text, path)
}

/// Validates inventory `text` that came from `origin`.
pub fn parse(text: &str, origin: &Path) -> Result<Inventory, PolicyError> {
    let file: InventoryFile = if text.trim().is_empty() {
        InventoryFile::default()
    } else {
        policy::deserialize_located(text, origin)?
    };
    let locations = Locations::of(text);
    let error = |field: String, message: String| {
        let location = locations.nearest(&field);
        PolicyError {
            file: origin.to_owned(),
            line: location.map(|(line, _)| line),
            column: location.map(|(_, column)| column),
            field: Some(field),
            message,
        }
    };
    let environment = |field: String, value: Option<String>| match value {
        Some(value) if !ENVIRONMENTS.contains(&value.as_str()) => Err(error(
            field,
            format!(
                "{value:?} is not an environment; use one of {}",
                ENVIRONMENTS.join(", ")
            ),
        )),
        value => Ok(value.map(Arc::from)),
    };

    let mut ranges = Vec::with_capacity(file.ranges.len());
    let mut range_of_name: HashMap<String, usize> = HashMap::new();
    let mut range_of_cidr: HashMap<IpNetwork, String> = HashMap::new();
    for (position, spec) in file.ranges.into_iter().enumerate() {
        let field = |name: &str| format!("ranges[{position}].{name}");
        if spec.name.trim().is_empty() {
            return Err(error(field("name"), "a range needs a name".to_owned()));
        }
        if let Some(other) = range_of_name.insert(spec.name.clone(), position) {
            return Err(error(
                field("name"),
                format!(
                    "ranges[{other}] is already named {:?}; records name ranges, so names must be unique",
                    spec.name
                ),
            ));
        }
        match (spec.kind, &spec.customer) {
            (RangeKind::Customer, None) => {
                return Err(error(
                    field("customer"),
                    "a customer range names its customer: add `customer: <name>`".to_owned(),
                ));
            }
            (kind, Some(_)) if kind != RangeKind::Customer => {
                return Err(error(
                    field("customer"),
                    "only ranges of kind customer name a customer".to_owned(),
                ));
            }
            _ => {}
        }
        if spec.cidrs.is_empty() {
            return Err(error(
                field("cidrs"),
                "a range needs at least one CIDR".to_owned(),
            ));
        }
        let mut cidrs = Vec::with_capacity(spec.cidrs.len());
        for (index, text) in spec.cidrs.iter().enumerate() {
            let cidr_field = format!("ranges[{position}].cidrs[{index}]");
            let cidr =
                parse_cidr(text).map_err(|cause| error(cidr_field.clone(), cause.to_string()))?;
            if let Some(other) = range_of_cidr.insert(cidr, spec.name.clone()) {
                return Err(error(
                    cidr_field,
                    format!(
                        "{cidr} is already in range {other:?}; an address's range must be unambiguous"
                    ),
                ));
            }
            cidrs.push(cidr);
        }
        let mut tags = Tags::from_pairs(&spec.tags)
            .map_err(|(key, message)| error(format!("ranges[{position}].tags.{key}"), message))?;
        if let Some(owner) = spec.owner {
            tags.insert("owner", &owner);
        }
        ranges.push(DeclaredRange {
            name: Arc::from(spec.name),
            kind: spec.kind,
            cidrs,
            customer: spec.customer.map(Arc::from),
            environment: environment(field("environment"), spec.environment)?,
            tags,
        });
    }

    let mut tag_rules = Vec::with_capacity(file.tag_rules.len());
    for (position, spec) in file.tag_rules.into_iter().enumerate() {
        let field = |name: &str| format!("tagRules[{position}].{name}");
        if let Some(selector) = &spec.selector {
            selector.validate().map_err(|(part, message)| {
                error(format!("tagRules[{position}].selector.{part}"), message)
            })?;
        }
        if spec.tags.is_empty() {
            return Err(error(
                field("tags"),
                "a tag rule needs at least one tag".to_owned(),
            ));
        }
        let tags = Tags::from_pairs(&spec.tags)
            .map_err(|(key, message)| error(format!("tagRules[{position}].tags.{key}"), message))?;
        if let Some(value) = tags.get("environment") {
            environment(
                format!("tagRules[{position}].tags.environment"),
                Some(value.to_string()),
            )?;
        }
        tag_rules.push(TagRule {
            namespace: spec.namespace,
            selector: spec.selector,
            kinds: spec
                .kinds
                .into_iter()
                .map(|kind| match kind {
                    RuleKind::Pod => Kind::Pod,
                    RuleKind::Service => Kind::Service,
                    RuleKind::Node => Kind::Node,
                })
                .collect(),
            tags,
        });
    }

    let apis = crate::apis::bindings(file.apis, origin, error)?;
    Ok(Inventory {
        cluster: file.cluster.map(Arc::from),
        environment: environment("environment".to_owned(), file.environment)?,
        ranges,
        tag_rules,
        apis,
    })
}

#[cfg(test)]
mod tests {
    use intelligence::{FindingKind, finding::Mode};

    use super::*;
    use crate::apis::Server;

    fn parse_text(text: &str) -> Result<Inventory, PolicyError> {
        parse(text, Path::new("inventory.yaml"))
    }

    const EXAMPLE: &str = "\
cluster: prod-eu-1
environment: production
ranges:
  - name: pods
    kind: pod-network
    cidrs: [10.0.0.0/14, \"fd00:10::/56\"]
    owner: platform@example.com
  - name: acme
    kind: customer
    customer: Acme Corp
    cidrs: [203.0.113.0/24]
    tags: {tier: gold}
  - name: scanners
    kind: scanner
    cidrs: [192.0.2.7]
tagRules:
  - namespace: payments
    tags: {product: checkout, owner: payments-team@example.com}
  - selector: {matchLabels: {app: db}}
    kinds: [pod]
    tags: {tag-data: pii}
";

    #[test]
    fn a_full_inventory_parses() {
        let inventory = parse_text(EXAMPLE).expect("valid inventory");
        assert_eq!(inventory.cluster.as_deref(), Some("prod-eu-1"));
        assert_eq!(inventory.environment.as_deref(), Some("production"));
        assert_eq!(inventory.ranges.len(), 3);
        assert_eq!(
            inventory.ranges[0].tags.get("owner").as_deref(),
            Some("platform@example.com")
        );
        assert_eq!(inventory.ranges[1].customer.as_deref(), Some("Acme Corp"));
        assert_eq!(
            inventory.ranges[2].cidrs,
            vec!["192.0.2.7/32".parse::<IpNetwork>().expect("cidr")]
        );
        assert_eq!(inventory.tag_rules.len(), 2);
        let labels = BTreeMap::from([("app".to_owned(), "db".to_owned())]);
        assert!(inventory.tag_rules[1].applies(Kind::Pod, Some("any"), &labels));
        assert!(!inventory.tag_rules[1].applies(Kind::Service, Some("any"), &labels));
        assert!(inventory.tag_rules[0].applies(Kind::Service, Some("payments"), &BTreeMap::new()));
        assert!(!inventory.tag_rules[0].applies(Kind::Pod, Some("shop"), &BTreeMap::new()));
    }

    #[test]
    fn an_empty_file_is_an_empty_inventory() {
        assert_eq!(
            parse_text("  \n").expect("empty is valid"),
            Inventory::default()
        );
    }

    #[test]
    fn apis_bind_specs_to_the_servers_that_serve_them() {
        let text = "\
apis:
  - name: petstore
    spec: specs/petstore.yaml
    servers:
      - {address: 198.18.2.0/24, port: 8080}
      - {host: pets.example.com}
      - service: {namespace: shop, name: pets}
    mode: block
    kinds: {spec.unused_endpoint: off}
    severities: {spec.undocumented_endpoint: high}
    unusedAfter: 2h
    blockFor: 30s
";
        let inventory = parse(text, Path::new("/etc/moat/inventory.yaml")).expect("valid");
        let api = &inventory.apis[0];
        assert_eq!(
            api.spec,
            crate::apis::SpecLocation::File("/etc/moat/specs/petstore.yaml".into())
        );
        assert_eq!(api.mode, Mode::Block);
        assert_eq!(
            api.modes.get(&FindingKind::UnusedEndpoint),
            Some(&Mode::Off)
        );
        assert_eq!(
            api.severities.get(&FindingKind::UndocumentedEndpoint),
            Some(&intelligence::Severity::High)
        );
        assert_eq!(api.unused_after, std::time::Duration::from_secs(7200));
        assert_eq!(api.block_for, std::time::Duration::from_secs(30));
        let server = |ip: &str, port: u16, authority: Option<&'static str>, service| Server {
            ip: ip.parse().expect("address"),
            port,
            authority,
            service,
        };
        assert!(api.serves(&server("198.18.2.9", 8080, None, None)));
        assert!(!api.serves(&server("198.18.2.9", 8081, None, None)));
        assert!(api.serves(&server("10.0.0.1", 80, Some("PETS.example.com:80"), None)));
        assert!(!api.serves(&server("10.0.0.1", 80, Some("other.example.com"), None)));
        assert!(api.serves(&server("10.0.0.1", 80, None, Some(("shop", "pets")))));
        assert!(!api.serves(&server("10.0.0.1", 80, None, Some(("shop", "cats")))));
        let defaults =
            parse_text("apis: [{name: a, spec: a.json, servers: [{port: 1}]}]\n").expect("valid");
        assert_eq!(defaults.apis[0].mode, Mode::Detect);
        assert_eq!(
            defaults.apis[0].block_for,
            std::time::Duration::from_secs(600)
        );
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let cases = [
            (
                "ranges:\n  - {name: a, kind: customer, cidrs: [10.0.0.0/8]}\n",
                "ranges[0].customer",
                "names its customer",
            ),
            (
                "ranges:\n  - {name: a, kind: partner, customer: x, cidrs: [10.0.0.0/8]}\n",
                "ranges[0].customer",
                "only ranges of kind customer",
            ),
            (
                "ranges:\n  - {name: a, kind: partner, cidrs: [10.0.0.0/33]}\n",
                "ranges[0].cidrs[0]",
                "",
            ),
            (
                "ranges:\n  - {name: a, kind: partner, cidrs: [10.0.0.0/8]}\n  - {name: b, kind: scanner, cidrs: [10.0.0.0/8]}\n",
                "ranges[1].cidrs[0]",
                "already in range \"a\"",
            ),
            (
                "ranges:\n  - {name: a, kind: partner, cidrs: [10.0.0.0/8]}\n  - {name: a, kind: scanner, cidrs: [10.1.0.0/16]}\n",
                "ranges[1].name",
                "already named",
            ),
            (
                "ranges:\n  - {name: a, kind: friends, cidrs: [10.0.0.0/8]}\n",
                "ranges[0].kind",
                "unknown variant",
            ),
            (
                "environment: prod\n",
                "environment",
                "dev, test, staging, production",
            ),
            (
                "tagRules:\n  - {namespace: x, tags: {}}\n",
                "tagRules[0].tags",
                "at least one tag",
            ),
            (
                "tagRules:\n  - {namespace: x, tags: {\"bad key!\": v}}\n",
                "tagRules[0].tags.bad key!",
                "tag name",
            ),
            (
                "tagRules:\n  - {tags: {environment: prd}}\n",
                "tagRules[0].tags.environment",
                "not an environment",
            ),
            (
                "tagRules:\n  - {selector: {matchLabels: {app: \"x y\"}}, tags: {a: b}}\n",
                "tagRules[0].selector.matchLabels.app",
                "label value",
            ),
            ("clusters: x\n", "clusters", "unknown field `clusters`"),
            (
                "apis:\n  - {name: shop, spec: s.yaml, servers: [{}]}\n",
                "apis[0].servers[0]",
                "at least one of address",
            ),
            (
                "apis:\n  - {name: shop, spec: s.yaml, servers: [{port: 80}], kinds: {spec.bogus: off}}\n",
                "apis[0].kinds.spec.bogus",
                "not a finding kind",
            ),
            (
                "apis:\n  - {name: shop, spec: s.yaml, servers: [{port: 80}], kinds: {spec.unexpected_status: block}}\n",
                "apis[0].kinds.spec.unexpected_status",
                "cannot block",
            ),
            (
                "apis:\n  - {name: shop, spec: s.yaml, servers: [{port: 80}], unusedAfter: soon}\n",
                "apis[0].unusedAfter",
                "not a duration",
            ),
            (
                "apis:\n  - {name: shop, spec: s.yaml, servers: [{address: 10.0.0.0/33}]}\n",
                "apis[0].servers[0].address",
                "",
            ),
            (
                "apis:\n  - {name: a, spec: s.yaml, servers: [{port: 1}]}\n  - {name: a, spec: t.yaml, servers: [{port: 2}]}\n",
                "apis[1].name",
                "already named",
            ),
            (
                "apis:\n  - {name: a, spec: s.yaml, servers: [{port: 1}], mode: enforce}\n",
                "apis[0].mode",
                "unknown variant",
            ),
        ];
        for (text, field, message) in cases {
            let error = parse_text(text).expect_err(text);
            assert_eq!(
                error.field.as_deref().unwrap_or(""),
                field,
                "{text}: {error}"
            );
            assert!(error.message.contains(message), "{text}: {error}");
            assert!(error.line.is_some(), "{text}: {error} has no line");
        }
    }
}
