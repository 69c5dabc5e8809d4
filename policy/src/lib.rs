//! Moat's enforcement policy.
//!
//! - [`load`]: read a policy file (and the blocklist files it names) into a validated [`Policy`],
//!   or an error naming the file, line and field that is wrong and what would be right.
//! - [`evaluate`]: the reference semantics, written for clarity rather than speed: what verdict
//!   a flow gets. docs/policy.md states the same rules in prose.
//! - [`compile`]: the kernel tables that make the XDP program reach the same verdicts with a
//!   bounded number of lookups.

mod cidr;
pub mod compile;
pub mod evaluate;
mod load;
pub mod locate;
mod model;
pub mod schema;
pub mod selector;
#[cfg(feature = "strategies")]
pub mod strategies;

pub use cidr::{CidrError, parse_cidr};
pub use load::{PolicyError, deserialize_located, load, load_with, parse};
pub use model::{
    Action, CombineError, Identity, Overlap, PodSelector, Policy, Protocol, RateLimit, Rule,
    Selector,
};
