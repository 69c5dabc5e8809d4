//! Proptest strategies: random policies and flows drawn from small address pools, so that
//! CIDRs, rules and packets overlap often and every precedence case comes up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use proptest::prelude::*;

use crate::{Action, Identity, Policy, Protocol, Rule, Selector, evaluate::Flow};

/// Addresses from a small pool, so that random CIDRs, rules and packets overlap often.
pub fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..4, 0u8..4).prop_map(|(c, d)| IpAddr::V4(Ipv4Addr::new(198, 18, c, d * 64))),
        (0u16..4, 0u16..4)
            .prop_map(|(a, b)| IpAddr::V6(Ipv6Addr::new(0xfd00, 0x198, 0x18, a, 0, 0, 0, b))),
    ]
}

pub fn network() -> impl Strategy<Value = IpNetwork> {
    (address(), 0u8..=4).prop_map(|(address, shrink)| {
        let full = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match shrink {
            0 => full,
            1 => full - 6,
            2 => full - 8,
            3 => full - 16,
            _ => full - 24,
        };
        let network = IpNetwork::new(address, prefix).expect("prefix fits the family");
        IpNetwork::new(network.network(), prefix).expect("prefix fits the family")
    })
}

pub fn selector(identities: usize) -> impl Strategy<Value = Selector> {
    prop_oneof![
        (0..identities.max(1)).prop_map(Selector::Identity),
        Just(Selector::World),
        Just(Selector::Any),
    ]
    .prop_filter("identity exists", move |selector| {
        !matches!(selector, Selector::Identity(_)) || identities > 0
    })
}

pub fn random_policy() -> impl Strategy<Value = Policy> {
    (0usize..5)
        .prop_flat_map(|count| {
            (
                proptest::collection::vec(
                    (proptest::collection::vec(network(), 1..3), any::<bool>()),
                    count,
                ),
                proptest::collection::vec(network(), 0..3),
                proptest::collection::vec(
                    (
                        selector(count),
                        selector(count),
                        any::<bool>(),
                        prop_oneof![
                            Just(Protocol::Tcp),
                            Just(Protocol::Udp),
                            Just(Protocol::Icmp),
                            Just(Protocol::Any)
                        ],
                        proptest::collection::vec(
                            prop_oneof![Just(80u16), Just(443), Just(5432)],
                            0..2,
                        ),
                    ),
                    0..8,
                ),
            )
        })
        .prop_map(|(identities, blocklist, rules)| {
            let mut seen = std::collections::HashSet::new();
            let identities = identities
                .into_iter()
                .enumerate()
                .map(|(index, (cidrs, isolated))| Identity {
                    name: format!("id{index}"),
                    // The loader refuses one CIDR in two identities; keep the first.
                    cidrs: cidrs
                        .into_iter()
                        .filter(|cidr| seen.insert(*cidr))
                        .collect(),
                    isolated,
                    pods: None,
                })
                .collect();
            let rules = rules
                .into_iter()
                .enumerate()
                .map(|(index, (from, to, deny, protocol, ports))| Rule {
                    name: format!("r{index}"),
                    action: if deny { Action::Deny } else { Action::Allow },
                    from,
                    to,
                    protocol,
                    ports: if protocol == Protocol::Icmp {
                        vec![]
                    } else {
                        ports
                    },
                })
                .collect();
            Policy {
                identities,
                blocklist,
                rules,
                rate_limits: vec![],
            }
        })
}

pub fn random_flow() -> impl Strategy<Value = Flow> {
    (
        address(),
        address(),
        prop_oneof![Just(6u8), Just(17), Just(1), Just(58), Just(47)],
        prop_oneof![Just(80u16), Just(443), Just(5432), Just(8080)],
    )
        .prop_filter("same family", |(src, dst, ..)| {
            src.is_ipv4() == dst.is_ipv4()
        })
        .prop_map(|(src, dst, protocol, port)| Flow {
            src,
            dst,
            protocol,
            dst_port: matches!(protocol, 6 | 17).then_some(port),
        })
}
