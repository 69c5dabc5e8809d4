//! The reference semantics of a policy, written to be read: what happens to a flow's packet.
//!
//! In order:
//! 1. A source on the blocklist is dropped.
//! 2. Source and destination each resolve to one identity: the one with the most specific CIDR
//!    containing the address, or world when none does.
//! 3. Rules whose `from`, `to`, protocol and ports match are collected. The most specific of them
//!    decide, a rule naming an identity or world on a side being more specific on that side than
//!    `any`: both sides named beats one side named beats `any` to `any`. Among the deciders a
//!    deny beats an allow, and the first rule in the file (of the winning action) is the one
//!    reported.
//! 4. No rule matched: an isolated destination drops the packet, anything else passes.
//!
//! Connection tracking (replies to allowed connections pass), rate limits and the exemption of
//! ARP and IPv6 neighbour discovery are stateful or below IP, and live in the kernel program;
//! docs/policy.md describes them with the rest.

use std::net::IpAddr;

use crate::model::{Action, Policy, Rule, Selector};

/// The facts of a packet that the policy judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).
    pub protocol: u8,
    /// TCP or UDP destination port; None for other protocols and for fragments without one.
    pub dst_port: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass(PassReason),
    Drop(DropReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassReason {
    NoRuleMatched,
    Rule(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    Blocklist,
    Rule(usize),
    Isolated,
}

/// The identity an address resolves to: the most specific CIDR containing it, None for world.
pub fn identity_of(policy: &Policy, address: IpAddr) -> Option<usize> {
    policy
        .identities
        .iter()
        .enumerate()
        .flat_map(|(index, identity)| identity.cidrs.iter().map(move |cidr| (index, cidr)))
        .filter(|(_, cidr)| cidr.contains(address))
        .max_by_key(|(_, cidr)| cidr.prefix())
        .map(|(index, _)| index)
}

pub fn evaluate(policy: &Policy, flow: &Flow) -> Verdict {
    if policy.blocklist.iter().any(|cidr| cidr.contains(flow.src)) {
        return Verdict::Drop(DropReason::Blocklist);
    }
    let source = identity_of(policy, flow.src);
    let destination = identity_of(policy, flow.dst);
    let matching: Vec<(usize, &Rule)> = policy
        .rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| {
            selects(rule.from, source) && selects(rule.to, destination) && applies(rule, flow)
        })
        .collect();
    if let Some(top) = matching.iter().map(|(_, rule)| specificity(rule)).max() {
        let deciders = matching.iter().filter(|(_, rule)| specificity(rule) == top);
        let first_of = |action| {
            deciders
                .clone()
                .find(|(_, rule)| rule.action == action)
                .map(|(index, _)| *index)
        };
        return match first_of(Action::Deny) {
            Some(index) => Verdict::Drop(DropReason::Rule(index)),
            None => Verdict::Pass(PassReason::Rule(
                first_of(Action::Allow).expect("a decider exists"),
            )),
        };
    }
    match destination {
        Some(index) if policy.identities[index].isolated => Verdict::Drop(DropReason::Isolated),
        _ => Verdict::Pass(PassReason::NoRuleMatched),
    }
}

fn selects(selector: Selector, identity: Option<usize>) -> bool {
    match selector {
        Selector::Any => true,
        Selector::World => identity.is_none(),
        Selector::Identity(index) => identity == Some(index),
    }
}

fn applies(rule: &Rule, flow: &Flow) -> bool {
    if !rule.protocol.matches(flow.protocol) {
        return false;
    }
    if rule.ports.is_empty() {
        return true;
    }
    let has_ports = flow.protocol == 6 || flow.protocol == 17;
    has_ports && flow.dst_port.is_some_and(|port| rule.ports.contains(&port))
}

/// How many sides of the rule name something narrower than `any`.
pub fn specificity(rule: &Rule) -> u8 {
    u8::from(rule.from != Selector::Any) + u8::from(rule.to != Selector::Any)
}
