//! Kubernetes as the agent sees it: watches (list, then watch with bookmarks; relist on 410 Gone;
//! back off on errors) over what identity needs and the ConfigMaps Services' `moat.dev/openapi`
//! annotations name, turned into compact facts and sent to the main loop, which owns the
//! identity index and the analysis. Nothing here blocks the loop: a slow or absent API server
//! only makes the facts older, and the agent reports how much older.

mod apis;
#[cfg(test)]
mod chart;
mod events;
mod policy;
mod watch;

pub use self::policy::{MoatPolicy, MoatPolicySpec, crd, crd_yaml};
pub use apis::{AnnotatedApis, ConfigMapDocuments, Document, MAX_CONFIG_MAP_BYTES};
pub use events::EventPublisher;
pub use watch::{Change, ConfigMapWatches, Scope, Update, WatchTarget, spawn_watches};
