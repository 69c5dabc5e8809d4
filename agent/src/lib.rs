//! moat-agent as a library: the binary is a thin `main` over [`run::main`], and the end-to-end
//! tests drive the enforcement API ([`enforcer::Enforcer`]) directly.

pub mod analysis;
pub mod capture;
pub mod cli;
pub mod crypto;
pub mod dataflow;
pub mod detection;
#[cfg(test)]
mod docs_examples;
pub mod enforcer;
pub mod events;
pub mod export;
pub mod file_source;
pub mod identity;
pub mod interfaces;
pub mod kubernetes;
pub mod loader;
pub mod metrics;
pub mod policies;
pub mod privileges;
pub mod protocol;
pub mod repeats;
pub mod report;
pub mod run;
pub mod traffic;
