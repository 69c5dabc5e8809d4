//! Who is talking: the identity of an address at a moment (pod, service, node, declared range or
//! external), of a process by its cgroup, and the tags an operator hangs on them.
//!
//! Pure: the agent feeds it Kubernetes objects and the inventory file's text and asks questions;
//! nothing here reads files, talks to the API server or keeps a clock.
//!
//! - [`inventory`]: the `--inventory` file (cluster, environment, named ranges, tag rules),
//!   validated with file/line/field errors.
//! - [`kubernetes`]: the compact facts Moat keeps from Pods, Services, Nodes, Namespaces and
//!   EndpointSlices (owner resolved through ReplicaSet to Deployment, containers by id).
//! - [`index`]: the identity of an address at a time, honest about pod IP reuse.
//! - [`cgroup`]: the pod and container a cgroup path belongs to (containerd, CRI-O, Docker;
//!   cgroup v1 and v2, systemd and cgroupfs drivers).
//! - [`tags`]: tags from `moat.dev/*` labels and annotations and from inventory rules.

pub mod apis;
pub mod cgroup;
pub mod index;
pub mod inventory;
pub mod kubernetes;
mod model;
pub mod ranges;
mod stored;
pub mod tags;

pub use index::IdentityIndex;
pub use inventory::{Inventory, RangeKind};
pub use model::{Identity, Kind, Workload};
