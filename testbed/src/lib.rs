//! A namespace testbed: a Kubernetes-like "node" and its "pods", built from network namespaces,
//! veth pairs and a bridge, for privileged tests and the demo.
//!
//! ```text
//!   node netns:   bridge "moat0" (gateways .1 / ::1 of each pod subnet, forwarding on)
//!                   |-- <host side of pod a's veth>   <- what moat-agent attaches to
//!                   |-- <host side of pod b's veth>
//!   pod netns a:  eth0 198.18.x.y, fd00:198:18:..., default routes via the bridge
//!   pod netns b:  eth0 ...
//! ```
//!
//! Everything lives in namespaces the testbed creates with names unique to the process and the
//! node, so tests run in parallel; dropping the [`Node`] (also while unwinding from a panic) kills
//! every process inside and removes every namespace. Namespaces left behind by a test process that
//! was killed outright are removed by the next testbed created on the machine.
//!
//! Addresses must come from 198.18.0.0/15 and fd00:198:18::/48, the ranges set aside for
//! benchmarking, so a testbed can never shadow or reach a real network.
//!
//! [`postgres`] starts throwaway PostgreSQL servers, for the collector's tests and benchmark;
//! [`tls`] makes a certificate authority and certificates for TLS peers.

mod command;
mod node;
pub mod postgres;
mod process;
pub mod tls;

pub use command::{CommandError, describe, run};
pub use node::{Node, Pod, PodSpec, TestbedError, enter_netns};
pub use process::{Background, spawn};
