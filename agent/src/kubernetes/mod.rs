//! Kubernetes as the agent sees it: watches (list, then watch with bookmarks; relist on 410 Gone;
//! back off on errors) over what identity needs, turned into compact facts and sent to the main
//! loop, which owns the identity index. Nothing here blocks the loop: a slow or absent API server
//! only makes the facts older, and the agent reports how much older.

mod events;
mod policy;
mod watch;

pub use self::policy::{MoatPolicy, MoatPolicySpec, crd, crd_yaml};
pub use events::EventPublisher;
pub use watch::{Change, Scope, Update, WatchTarget, spawn_watches};
