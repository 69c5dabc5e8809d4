//! What Moat knows about each API from the calls it sees.
//!
//! - [`template`]: concrete paths folded into endpoint templates (`/users/42` -> `/users/{id}`);
//! - [`endpoints`]: the bounded inventory of each service's endpoints and who calls them;
//! - [`caller`]: who calls, at four levels (workload or range, application, customer, user);
//! - [`openapi`]: OpenAPI 3.0/3.1 documents loaded, compiled and checked against calls;
//! - [`learn`]: OpenAPI documents inferred from the calls themselves;
//! - [`finding`]: what is worth telling a human, with masked evidence.
//!
//! Everything here is a pure function of its inputs: the agent does the I/O (files, clocks) and
//! hands in [`Exchange`]s; nothing panics or grows without bound on hostile input.

pub mod analyzer;
pub mod auth;
pub mod caller;
pub mod endpoints;
pub mod exchange;
pub mod finding;
pub mod learn;
pub mod openapi;
pub mod template;

pub use caller::Caller;
pub use exchange::Exchange;
pub use finding::{Finding, FindingKind, Severity};
