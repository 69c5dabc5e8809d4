//! Kubernetes Events on MoatPolicies the agent refuses, so `kubectl describe moatpolicy` says
//! why. Published by one task from a bounded queue: the main loop never waits on the API
//! server, and events that do not fit are counted, not queued without end.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use tracing::debug;

const QUEUE: usize = 64;

pub struct EventPublisher {
    queue: mpsc::Sender<(String, String)>,
    /// Events not published because the queue was full.
    pub dropped: Arc<AtomicU64>,
}

impl EventPublisher {
    pub fn start(client: kube::Client, node_name: &str) -> Self {
        let (queue, mut pending) = mpsc::channel::<(String, String)>(QUEUE);
        let reporter = Reporter {
            controller: "moat-agent".to_owned(),
            instance: Some(node_name.to_owned()),
        };
        let recorder = Recorder::new(client, reporter);
        tokio::spawn(async move {
            while let Some((key, error)) = pending.recv().await {
                let (namespace, name) = key.split_once('/').unwrap_or(("", &key));
                let reference = ObjectReference {
                    api_version: Some("moat.dev/v1alpha1".to_owned()),
                    kind: Some("MoatPolicy".to_owned()),
                    namespace: Some(namespace.to_owned()),
                    name: Some(name.to_owned()),
                    ..ObjectReference::default()
                };
                let event = Event {
                    type_: EventType::Warning,
                    reason: "PolicyRefused".to_owned(),
                    // The API server caps an event's note at 1 kB.
                    note: Some(error.chars().take(1000).collect()),
                    action: "Enforce".to_owned(),
                    secondary: None,
                };
                if let Err(error) = recorder.publish(&event, &reference).await {
                    debug!(%error, policy = key, "could not publish the refusal as a Kubernetes Event");
                }
            }
        });
        Self {
            queue,
            dropped: Arc::default(),
        }
    }

    /// Queues an event on MoatPolicy `key` (`namespace/name`).
    pub fn refused(&self, key: &str, error: &str) {
        if self
            .queue
            .try_send((key.to_owned(), error.to_owned()))
            .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
