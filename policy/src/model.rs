//! A validated policy: every reference resolved, every CIDR parsed, every limit checked.

use std::{collections::HashMap, net::IpAddr};

use ipnetwork::IpNetwork;

use crate::selector::LabelSelector;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Sorted by name. An identity's kernel id is its index plus one (0 is world).
    pub identities: Vec<Identity>,
    pub blocklist: Vec<IpNetwork>,
    /// In file order: a rule's index is its position.
    pub rules: Vec<Rule>,
    pub rate_limits: Vec<RateLimit>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub cidrs: Vec<IpNetwork>,
    /// Default-deny ingress: only explicit allow rules reach it.
    pub isolated: bool,
    /// Kubernetes pods that belong to the identity besides its CIDRs, resolved by the agent to
    /// their current addresses ([`Policy::resolve_pods`]).
    pub pods: Option<PodSelector>,
}

/// Which pods: all of these that are given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PodSelector {
    pub namespace: Option<String>,
    /// Over the labels of the pod's namespace.
    pub namespaces: Option<LabelSelector>,
    /// Over the pod's labels.
    pub labels: Option<LabelSelector>,
}

/// Who a rule or rate limit applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    /// Addresses whose most specific identity is this one (index into `Policy::identities`).
    Identity(usize),
    /// Addresses no identity covers.
    World,
    /// Every address.
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

impl Protocol {
    /// Does a packet of IP protocol `number` match? ICMP covers ICMPv6 too.
    pub fn matches(self, number: u8) -> bool {
        match self {
            Protocol::Tcp => number == 6,
            Protocol::Udp => number == 17,
            Protocol::Icmp => number == 1 || number == 58,
            Protocol::Any => true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub action: Action,
    pub from: Selector,
    pub to: Selector,
    pub protocol: Protocol,
    /// Destination ports; empty means every port. Only for TCP and UDP (and `any`, which then
    /// means TCP or UDP to these ports).
    pub ports: Vec<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub name: String,
    /// An identity or world, never any.
    pub to: Selector,
    pub packets_per_second: u64,
    pub burst: u64,
}

/// An address two identities' pod selectors both picked: it went to `kept`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlap {
    pub address: IpAddr,
    pub kept: String,
    pub dropped: String,
}

/// Why policies could not be combined.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct CombineError {
    /// The prefix of the policy that conflicts with those before it.
    pub source_name: String,
    pub message: String,
}

impl Policy {
    pub fn has_pod_selectors(&self) -> bool {
        self.identities
            .iter()
            .any(|identity| identity.pods.is_some())
    }

    /// The policy with each pod selector's current addresses added to its identity as exact
    /// CIDRs. An address is one identity's: one a CIDR names exactly keeps it; one two selectors
    /// pick goes to the first identity by name, and the overlap is returned so it can be reported.
    pub fn resolve_pods(
        &self,
        addresses_of: &dyn Fn(&PodSelector) -> Vec<IpAddr>,
    ) -> (Policy, Vec<Overlap>) {
        let mut resolved = self.clone();
        let mut owner: HashMap<IpNetwork, usize> = HashMap::new();
        for (index, identity) in self.identities.iter().enumerate() {
            for cidr in &identity.cidrs {
                owner.insert(*cidr, index);
            }
        }
        let mut overlaps = Vec::new();
        for (index, identity) in self.identities.iter().enumerate() {
            let Some(selector) = &identity.pods else {
                continue;
            };
            for address in addresses_of(selector) {
                let exact = IpNetwork::from(address);
                match owner.get(&exact) {
                    Some(&other) if other == index => {}
                    Some(&other) => overlaps.push(Overlap {
                        address,
                        kept: self.identities[other].name.clone(),
                        dropped: identity.name.clone(),
                    }),
                    None => {
                        owner.insert(exact, index);
                        resolved.identities[index].cidrs.push(exact);
                    }
                }
            }
        }
        (resolved, overlaps)
    }

    /// Several policies (the policy file, and each MoatPolicy) enforced as one. Each policy's
    /// identities and rules are renamed `<prefix><name>` so they stay its own; rules of one policy
    /// reach only its own identities (and world and any). A policy whose CIDRs overlap those of an
    /// earlier one, or that limits world again, cannot join: the error names it.
    pub fn combine(parts: &[(String, &Policy)]) -> Result<Policy, CombineError> {
        let mut combined = Policy::allow_all();
        let mut owner_of_cidr: HashMap<IpNetwork, String> = HashMap::new();
        let mut world_limited_by: Option<String> = None;
        // First collect every identity, to learn the final (sorted) index of each.
        let mut named: Vec<(String, Identity)> = Vec::new();
        for (prefix, policy) in parts {
            for identity in &policy.identities {
                for cidr in &identity.cidrs {
                    if let Some(other) =
                        owner_of_cidr.insert(*cidr, format!("{prefix}{}", identity.name))
                    {
                        return Err(CombineError {
                            source_name: prefix.clone(),
                            message: format!(
                                "identity {:?} claims {cidr}, which {other:?} already has",
                                identity.name
                            ),
                        });
                    }
                }
                let mut renamed = identity.clone();
                renamed.name = format!("{prefix}{}", identity.name);
                named.push((prefix.clone(), renamed));
            }
        }
        named.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        let index_of: HashMap<String, usize> = named
            .iter()
            .enumerate()
            .map(|(index, (_, identity))| (identity.name.clone(), index))
            .collect();
        combined.identities = named.into_iter().map(|(_, identity)| identity).collect();
        for (prefix, policy) in parts {
            let remap = |selector: Selector| match selector {
                Selector::Identity(index) => Selector::Identity(
                    index_of[&format!("{prefix}{}", policy.identities[index].name)],
                ),
                other => other,
            };
            for rule in &policy.rules {
                combined.rules.push(Rule {
                    name: format!("{prefix}{}", rule.name),
                    from: remap(rule.from),
                    to: remap(rule.to),
                    ..rule.clone()
                });
            }
            for limit in &policy.rate_limits {
                if limit.to == Selector::World {
                    if let Some(other) = &world_limited_by {
                        return Err(CombineError {
                            source_name: prefix.clone(),
                            message: format!(
                                "rate limit {:?} limits world, which {other:?} already limits",
                                limit.name
                            ),
                        });
                    }
                    world_limited_by = Some(format!("{prefix}{}", limit.name));
                }
                combined.rate_limits.push(RateLimit {
                    name: format!("{prefix}{}", limit.name),
                    to: remap(limit.to),
                    ..limit.clone()
                });
            }
            combined.blocklist.extend(policy.blocklist.iter().copied());
        }
        combined.blocklist.sort_unstable();
        combined.blocklist.dedup();
        Ok(combined)
    }

    /// An empty policy: every packet passes.
    pub fn allow_all() -> Self {
        Self {
            identities: Vec::new(),
            blocklist: Vec::new(),
            rules: Vec::new(),
            rate_limits: Vec::new(),
        }
    }
}
