//! A validated policy: every reference resolved, every CIDR parsed, every limit checked.

use ipnetwork::IpNetwork;

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

impl Policy {
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
