//! The endpoint inventory: per service, each (method, template) seen, with its traffic, who
//! calls it and how it authenticates. Every collection here is bounded and what a bound turns
//! away is counted.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::{
    Caller, Exchange,
    auth::AuthScheme,
    learn::Learned,
    template::{self, Segment, TemplateLimits, TemplateTree},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventoryLimits {
    pub services: usize,
    pub endpoints_per_service: usize,
    pub callers_per_endpoint: usize,
    pub content_types_per_endpoint: usize,
    pub template: TemplateLimits,
}

impl Default for InventoryLimits {
    fn default() -> Self {
        Self {
            services: 1024,
            endpoints_per_service: 2048,
            callers_per_endpoint: 64,
            content_types_per_endpoint: 8,
            template: TemplateLimits::default(),
        }
    }
}

/// The template a bound spec gives a call, and where in the spec it is.
#[derive(Debug, Clone, Copy)]
pub struct Documented<'a> {
    pub template: &'a str,
    pub pointer: &'a str,
}

/// Latency in power-of-two microsecond buckets: bucket `i` holds latencies below `2^i` us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    buckets: [u64; 40],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self { buckets: [0; 40] }
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, latency_us: u64) {
        let bucket = (u64::BITS - latency_us.leading_zeros()) as usize;
        self.buckets[bucket.min(self.buckets.len() - 1)] += 1;
    }

    fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
    }

    /// The upper bound (us) of the bucket holding the `quantile` latency; None when empty.
    pub fn quantile(&self, quantile: f64) -> Option<u64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(1u64 << bucket);
            }
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallerStats {
    pub calls: u64,
    pub first_seen: u64,
    pub last_seen: u64,
}

/// One endpoint's traffic since it was first seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStats {
    pub first_seen: u64,
    pub last_seen: u64,
    pub calls: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    /// Calls whose response was never seen.
    pub no_response: u64,
    pub latency: LatencyHistogram,
    pub request_content_types: Vec<String>,
    pub response_content_types: Vec<String>,
    /// Bits of [`AuthScheme::bit`].
    pub auth: u16,
    /// Successful (2xx) calls that carried credentials, and that carried none: an endpoint
    /// only ever answered with credentials is one that needs them.
    pub authenticated_successes: u64,
    pub unauthenticated_successes: u64,
    pub callers: BTreeMap<Caller, CallerStats>,
    /// Calls from callers beyond the per-endpoint bound.
    pub other_callers_calls: u64,
    /// The bound spec's operation, when it documents this endpoint.
    pub documented: Option<String>,
    /// Shapes of parameters and bodies, for specs learned from traffic.
    pub learned: Learned,
    /// Tags of the servers that answered (owner, team, product, ...), at most
    /// [`MAX_ENDPOINT_TAGS`]; a later value of a tag replaces the earlier.
    pub tags: BTreeMap<String, String>,
    /// The learned template's segments (None for spec templates), to re-template on learning.
    segments: Option<Vec<Segment>>,
    changed: bool,
}

impl EndpointStats {
    fn new(time: u64, segments: Option<Vec<Segment>>, documented: Option<String>) -> Self {
        Self {
            first_seen: time,
            last_seen: time,
            calls: 0,
            client_errors: 0,
            server_errors: 0,
            no_response: 0,
            latency: LatencyHistogram::default(),
            request_content_types: Vec::new(),
            response_content_types: Vec::new(),
            auth: 0,
            authenticated_successes: 0,
            unauthenticated_successes: 0,
            callers: BTreeMap::new(),
            other_callers_calls: 0,
            documented,
            learned: Learned::default(),
            tags: BTreeMap::new(),
            segments,
            changed: true,
        }
    }

    pub fn auth_schemes(&self) -> impl Iterator<Item = AuthScheme> + '_ {
        AuthScheme::ALL
            .into_iter()
            .filter(|scheme| self.auth & scheme.bit() != 0)
    }

    /// Whether enough successful calls all carried credentials to call the endpoint an
    /// authenticated one.
    pub fn observed_authenticated(&self) -> bool {
        self.authenticated_successes >= MIN_AUTHENTICATED_SUCCESSES
            && self.unauthenticated_successes == 0
    }

    /// Counts the call; says whether its caller is new here.
    fn count(&mut self, exchange: &Exchange<'_>, template: &str, limits: &InventoryLimits) -> bool {
        self.learned
            .observe(exchange, &placeholder_values(template, exchange.path));
        let time = exchange.time_unix_secs;
        self.first_seen = self.first_seen.min(time);
        self.last_seen = self.last_seen.max(time);
        self.calls += 1;
        match exchange.status {
            None => self.no_response += 1,
            Some(400..=499) => self.client_errors += 1,
            Some(500..=599) => self.server_errors += 1,
            Some(_) => {}
        }
        if let Some(latency) = exchange.latency_us {
            self.latency.record(latency);
        }
        let bound = limits.content_types_per_endpoint;
        remember(
            &mut self.request_content_types,
            exchange.request.media_type(),
            bound,
        );
        remember(
            &mut self.response_content_types,
            exchange.response.media_type(),
            bound,
        );
        self.auth |= exchange.auth.bit();
        if exchange
            .status
            .is_some_and(|status| (200..300).contains(&status))
        {
            if exchange.auth.is_authenticated() {
                self.authenticated_successes += 1;
            } else {
                self.unauthenticated_successes += 1;
            }
        }
        self.changed = true;
        if let Some(caller) = self.callers.get_mut(exchange.caller) {
            caller.calls += 1;
            caller.last_seen = caller.last_seen.max(time);
            return false;
        }
        // New news only for a new workload or range: its applications, customers and users
        // are listed, not announced.
        let new_peer = !self
            .callers
            .keys()
            .any(|known| known.peer == exchange.caller.peer);
        if self.callers.len() >= limits.callers_per_endpoint {
            // Never listed, so it would be new on every call: counted, not announced.
            self.other_callers_calls += 1;
            return false;
        }
        self.callers.insert(
            exchange.caller.clone(),
            CallerStats {
                calls: 1,
                first_seen: time,
                last_seen: time,
            },
        );
        new_peer
    }

    fn merge(&mut self, other: Self, limits: &InventoryLimits) {
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.calls += other.calls;
        self.client_errors += other.client_errors;
        self.server_errors += other.server_errors;
        self.no_response += other.no_response;
        self.latency.merge(&other.latency);
        let bound = limits.content_types_per_endpoint;
        for media in other.request_content_types {
            remember(&mut self.request_content_types, Some(media), bound);
        }
        for media in other.response_content_types {
            remember(&mut self.response_content_types, Some(media), bound);
        }
        self.auth |= other.auth;
        self.authenticated_successes += other.authenticated_successes;
        self.unauthenticated_successes += other.unauthenticated_successes;
        self.learned.merge(&other.learned);
        for (name, value) in other.tags {
            remember_tag(&mut self.tags, name, value);
        }
        self.other_callers_calls += other.other_callers_calls;
        for (name, theirs) in other.callers {
            if let Some(mine) = self.callers.get_mut(&name) {
                mine.calls += theirs.calls;
                mine.first_seen = mine.first_seen.min(theirs.first_seen);
                mine.last_seen = mine.last_seen.max(theirs.last_seen);
            } else if self.callers.len() < limits.callers_per_endpoint {
                self.callers.insert(name, theirs);
            } else {
                self.other_callers_calls += theirs.calls;
            }
        }
        self.changed = true;
    }
}

/// Tags kept per endpoint at most.
pub const MAX_ENDPOINT_TAGS: usize = 16;
/// Successful calls, all with credentials, before an endpoint counts as authenticated: a few
/// calls from one client that happened to send a token prove little.
pub const MIN_AUTHENTICATED_SUCCESSES: u64 = 10;

fn remember_tag(tags: &mut BTreeMap<String, String>, name: String, value: String) {
    if tags.len() < MAX_ENDPOINT_TAGS || tags.contains_key(&name) {
        tags.insert(name, value);
    }
}

/// The path's segments where the template has placeholders, in order.
fn placeholder_values<'a>(template: &str, path: &'a str) -> Vec<&'a str> {
    template
        .split('/')
        .filter(|segment| !segment.is_empty())
        .zip(path.split('/').filter(|segment| !segment.is_empty()))
        .filter(|(segment, _)| segment.contains('{'))
        .map(|(_, value)| value)
        .collect()
}

fn remember(set: &mut Vec<String>, value: Option<String>, bound: usize) {
    if let Some(value) = value
        && set.len() < bound
        && !set.contains(&value)
    {
        set.push(value);
    }
}

/// Method and template of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    pub method: String,
    pub template: String,
}

/// The template of calls past a service's endpoint bound.
pub const OVERFLOW_TEMPLATE: &str = "{overflow}";

/// The template of calls answered 404 on paths that are no endpoint of the service: what a
/// scanner's sweep or a stale client asks for is counted, not inventoried.
pub const NOT_FOUND_TEMPLATE: &str = "{not_found}";

#[derive(Debug)]
struct ServiceInventory {
    tree: TemplateTree,
    endpoints: FxHashMap<EndpointKey, EndpointStats>,
}

/// What counting one call found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub endpoint: EndpointKey,
    /// The endpoint was not in the inventory before this call.
    pub new_endpoint: bool,
    /// The caller had not called this endpoint before.
    pub new_caller: bool,
    /// The call was counted in the service's overflow bucket, which it opened.
    pub overflow_opened: bool,
    /// Before this call, the endpoint was [`EndpointStats::observed_authenticated`].
    pub was_authenticated: bool,
}

#[derive(Debug)]
pub struct Inventory {
    services: FxHashMap<String, ServiceInventory>,
    limits: InventoryLimits,
    /// Calls to services beyond the bound on services: not inventoried.
    pub services_overflow_calls: u64,
}

/// Methods are tokens; anything else, or an unusually long one, is counted as `OTHER` so that
/// hostile methods cannot grow the inventory.
fn method_name(method: &str) -> String {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN
        .iter()
        .find(|known| known.eq_ignore_ascii_case(method))
        .map_or_else(|| "OTHER".to_owned(), |known| (*known).to_owned())
}

impl Inventory {
    pub fn new(limits: InventoryLimits) -> Self {
        Self {
            services: FxHashMap::default(),
            limits,
            services_overflow_calls: 0,
        }
    }

    /// Counts `exchange` against `service`, under the spec's template when a bound spec
    /// documents it and the learned template otherwise. None when the service bound is reached.
    pub fn observe(
        &mut self,
        service: &str,
        exchange: &Exchange<'_>,
        documented: Option<Documented<'_>>,
    ) -> Option<Observed> {
        if !self.services.contains_key(service) {
            if self.services.len() >= self.limits.services {
                self.services_overflow_calls += 1;
                return None;
            }
            self.services.insert(
                service.to_owned(),
                ServiceInventory {
                    tree: TemplateTree::new(self.limits.template),
                    endpoints: FxHashMap::default(),
                },
            );
        }
        let limits = self.limits;
        let inventory = self.services.get_mut(service)?;
        let method = method_name(exchange.method);
        let (template, segments) = match documented {
            Some(documented) => (documented.template.to_owned(), None),
            None if exchange.status == Some(404) => {
                // Only a path already inventoried (`/orders/{id}` for a missing order) counts
                // as its endpoint; others neither become endpoints nor shape the templates.
                let template = template::render(&inventory.tree.lookup(exchange.path));
                let known = EndpointKey {
                    method: method.clone(),
                    template,
                };
                if inventory.endpoints.contains_key(&known) {
                    (known.template, None)
                } else {
                    (NOT_FOUND_TEMPLATE.to_owned(), None)
                }
            }
            None => {
                let mut learned = Vec::new();
                let segments = inventory.tree.template(exchange.path, &mut learned);
                for learned in &learned {
                    inventory.relearn(learned, &limits);
                }
                (template::render(&segments), Some(segments))
            }
        };
        let mut key = EndpointKey { method, template };
        let mut new_endpoint = false;
        let mut overflow_opened = false;
        if !inventory.endpoints.contains_key(&key) {
            if inventory.endpoints.len() >= limits.endpoints_per_service {
                key.template = OVERFLOW_TEMPLATE.to_owned();
                key.method = "OTHER".to_owned();
                overflow_opened = !inventory.endpoints.contains_key(&key);
            } else {
                new_endpoint = key.template != NOT_FOUND_TEMPLATE;
            }
            let documented = documented.map(|documented| documented.pointer.to_owned());
            inventory.endpoints.entry(key.clone()).or_insert_with(|| {
                EndpointStats::new(exchange.time_unix_secs, segments, documented)
            });
        }
        let stats = inventory.endpoints.get_mut(&key)?;
        let was_authenticated = stats.observed_authenticated();
        let new_caller = stats.count(exchange, &key.template, &limits)
            && !new_endpoint
            && key.template != NOT_FOUND_TEMPLATE;
        Some(Observed {
            endpoint: key,
            new_endpoint,
            new_caller,
            overflow_opened,
            was_authenticated,
        })
    }

    /// (services, endpoints) inventoried now.
    pub fn size(&self) -> (usize, usize) {
        let endpoints = self
            .services
            .values()
            .map(|inventory| inventory.endpoints.len())
            .sum();
        (self.services.len(), endpoints)
    }

    pub fn endpoint(&self, service: &str, key: &EndpointKey) -> Option<&EndpointStats> {
        self.services.get(service)?.endpoints.get(key)
    }

    /// Adds the tags of the server that answered a call of the endpoint.
    pub fn tag<'a>(
        &mut self,
        service: &str,
        key: &EndpointKey,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        let Some(stats) = self
            .services
            .get_mut(service)
            .and_then(|inventory| inventory.endpoints.get_mut(key))
        else {
            return;
        };
        for (name, value) in tags {
            if stats.tags.get(name).map(String::as_str) != Some(value) {
                remember_tag(&mut stats.tags, name.to_owned(), value.to_owned());
                stats.changed = true;
            }
        }
    }

    /// Every endpoint of every service.
    pub fn endpoints(&self) -> impl Iterator<Item = (&str, &EndpointKey, &EndpointStats)> {
        self.services.iter().flat_map(|(service, inventory)| {
            inventory
                .endpoints
                .iter()
                .map(move |(key, stats)| (service.as_str(), key, stats))
        })
    }

    /// Endpoints counted since the last call, each once, sorted; marks them reported.
    pub fn take_changed(&mut self) -> Vec<(String, EndpointKey, EndpointStats)> {
        let mut changed = Vec::new();
        for (service, inventory) in &mut self.services {
            for (key, stats) in &mut inventory.endpoints {
                if stats.changed {
                    stats.changed = false;
                    changed.push((service.clone(), key.clone(), stats.clone()));
                }
            }
        }
        changed.sort_by(|one, other| (&one.0, &one.1).cmp(&(&other.0, &other.1)));
        changed
    }
}

impl ServiceInventory {
    /// Folds the endpoints whose templates `learned` changes into their new templates.
    fn relearn(&mut self, learned: &template::Learned, limits: &InventoryLimits) {
        let moved: Vec<(EndpointKey, Vec<Segment>)> = self
            .endpoints
            .iter()
            .filter_map(|(key, stats)| {
                let relearned = template::relearn(stats.segments.as_deref()?, learned)?;
                Some((key.clone(), relearned))
            })
            .collect();
        for (old_key, segments) in moved {
            let Some(stats) = self.endpoints.remove(&old_key) else {
                continue;
            };
            let key = EndpointKey {
                method: old_key.method,
                template: template::render(&segments),
            };
            match self.endpoints.get_mut(&key) {
                Some(existing) => existing.merge(stats, limits),
                None => {
                    let mut stats = stats;
                    stats.segments = Some(segments);
                    stats.changed = true;
                    self.endpoints.insert(key, stats);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::Side;

    fn exchange<'a>(method: &'a str, path: &'a str, caller: &'a str, status: u16) -> Exchange<'a> {
        Exchange {
            method,
            path,
            query: None,
            status: Some(status),
            request: Side::default(),
            response: Side {
                headers: &[("Content-Type", "application/json; charset=utf-8")],
                seen: true,
                ..Side::default()
            },
            // Leaked: a test's few callers must outlive the exchanges that borrow them.
            caller: Box::leak(Box::new(Caller::peer(caller))),
            auth: AuthScheme::BearerJwt,
            time_unix_secs: 1_000,
            latency_us: Some(1_500),
        }
    }

    #[test]
    fn each_user_of_a_workload_is_listed_but_only_the_workload_is_news() {
        let mut inventory = Inventory::new(InventoryLimits::default());
        let as_user = |user: &str| Caller {
            user: Some(user.to_owned()),
            ..Caller::peer("web")
        };
        let (ann, bob) = (as_user("#a"), as_user("#b"));
        let mut news = Vec::new();
        for caller in [&ann, &bob, &ann] {
            let call = Exchange {
                caller,
                ..exchange("GET", "/users/1", "web", 200)
            };
            let observed = inventory.observe("shop", &call, None).expect("counted");
            news.push(observed.new_endpoint || observed.new_caller);
        }
        assert_eq!(news, [true, false, false]);
        let key = EndpointKey {
            method: "GET".into(),
            template: "/users/{id}".into(),
        };
        let stats = inventory.endpoint("shop", &key).expect("inventoried");
        let listed: Vec<(Option<&str>, u64)> = stats
            .callers
            .iter()
            .map(|(caller, counts)| (caller.user.as_deref(), counts.calls))
            .collect();
        assert_eq!(listed, [(Some("#a"), 2), (Some("#b"), 1)]);
    }

    #[test]
    fn paths_answered_404_are_counted_together_and_teach_no_templates() {
        let mut inventory = Inventory::new(InventoryLimits::default());
        // A sweep of more names under /files/ than a position holds as literals.
        for index in 0..100 {
            let path = format!("/files/name{index}");
            let observed = inventory
                .observe("shop", &exchange("GET", &path, "scanner", 404), None)
                .expect("counted");
            assert_eq!(observed.endpoint.template, NOT_FOUND_TEMPLATE, "{path}");
            assert!(!observed.new_endpoint && !observed.new_caller, "{path}");
        }
        let found = inventory
            .observe("shop", &exchange("GET", "/files/readme", "web", 200), None)
            .expect("counted");
        assert_eq!(
            (found.endpoint.template.as_str(), found.new_endpoint),
            ("/files/readme", true),
            "the sweep did not make /files/ a position of values"
        );
        let not_found = EndpointKey {
            method: "GET".into(),
            template: NOT_FOUND_TEMPLATE.into(),
        };
        let stats = inventory.endpoint("shop", &not_found).expect("counted");
        assert_eq!((stats.calls, stats.client_errors), (100, 100));
        // A 404 of a path whose template is inventoried is a call of that endpoint.
        let missing = inventory
            .observe("shop", &exchange("GET", "/files/readme", "web", 404), None)
            .expect("counted");
        assert_eq!(missing.endpoint.template, "/files/readme");
    }

    #[test]
    fn calls_are_counted_per_endpoint_with_their_callers_and_errors() {
        let mut inventory = Inventory::new(InventoryLimits::default());
        let first = inventory
            .observe("shop", &exchange("GET", "/users/1", "web", 200), None)
            .expect("room for the service");
        assert!(first.new_endpoint && !first.new_caller);
        let again = inventory
            .observe("shop", &exchange("get", "/users/2", "web", 404), None)
            .expect("counted");
        assert!(!again.new_endpoint && !again.new_caller);
        let other = inventory
            .observe("shop", &exchange("GET", "/users/3", "batch", 500), None)
            .expect("counted");
        assert!(other.new_caller);
        let key = EndpointKey {
            method: "GET".into(),
            template: "/users/{id}".into(),
        };
        let stats = inventory.endpoint("shop", &key).expect("inventoried");
        assert_eq!(
            (stats.calls, stats.client_errors, stats.server_errors),
            (3, 1, 1)
        );
        assert_eq!(stats.callers.len(), 2);
        assert_eq!(stats.response_content_types, ["application/json"]);
        assert_eq!(
            stats.auth_schemes().collect::<Vec<_>>(),
            [AuthScheme::BearerJwt]
        );
        assert_eq!(stats.latency.quantile(0.5), Some(2048));
        let changed = inventory.take_changed();
        assert_eq!(changed.len(), 1);
        assert!(inventory.take_changed().is_empty());
    }

    #[test]
    fn spec_templates_name_documented_endpoints() {
        let mut inventory = Inventory::new(InventoryLimits::default());
        let documented = Documented {
            template: "/pet/{petId}",
            pointer: "#/paths/~1pet~1{petId}/get",
        };
        let observed = inventory
            .observe(
                "petstore",
                &exchange("GET", "/pet/7", "web", 200),
                Some(documented),
            )
            .expect("counted");
        assert_eq!(observed.endpoint.template, "/pet/{petId}");
        let stats = inventory
            .endpoint("petstore", &observed.endpoint)
            .expect("inventoried");
        assert_eq!(
            stats.documented.as_deref(),
            Some("#/paths/~1pet~1{petId}/get")
        );
    }

    #[test]
    fn past_the_endpoint_bound_calls_go_to_one_reported_overflow_bucket() {
        let limits = InventoryLimits {
            endpoints_per_service: 2,
            ..InventoryLimits::default()
        };
        let mut inventory = Inventory::new(limits);
        let mut opened = 0;
        for path in ["/a", "/b", "/c", "/d", "/e"] {
            let observed = inventory
                .observe("svc", &exchange("GET", path, "web", 200), None)
                .expect("counted");
            opened += usize::from(observed.overflow_opened);
        }
        assert_eq!(opened, 1);
        let overflow = EndpointKey {
            method: "OTHER".into(),
            template: OVERFLOW_TEMPLATE.into(),
        };
        assert_eq!(
            inventory.endpoint("svc", &overflow).map(|s| s.calls),
            Some(3)
        );
    }

    #[test]
    fn learning_a_value_position_merges_the_endpoints_it_held() {
        let limits = InventoryLimits {
            template: TemplateLimits {
                literals_per_position: 2,
                ..TemplateLimits::default()
            },
            ..InventoryLimits::default()
        };
        let mut inventory = Inventory::new(limits);
        for name in ["alice", "bob", "carol", "dave"] {
            inventory.observe(
                "svc",
                &exchange("GET", &format!("/u/{name}"), name, 200),
                None,
            );
        }
        let keys: Vec<String> = inventory
            .endpoints()
            .map(|(_, key, _)| key.template.clone())
            .collect();
        assert_eq!(keys, ["/u/{param}"]);
        let (_, _, stats) = inventory.endpoints().next().expect("one endpoint");
        assert_eq!((stats.calls, stats.callers.len()), (4, 4));
    }

    #[test]
    fn services_and_callers_are_bounded_and_counted() {
        let limits = InventoryLimits {
            services: 1,
            callers_per_endpoint: 1,
            ..InventoryLimits::default()
        };
        let mut inventory = Inventory::new(limits);
        inventory.observe("one", &exchange("GET", "/", "a", 200), None);
        inventory.observe("one", &exchange("GET", "/", "b", 200), None);
        assert!(
            inventory
                .observe("two", &exchange("GET", "/", "a", 200), None)
                .is_none()
        );
        assert_eq!(inventory.services_overflow_calls, 1);
        let (_, _, stats) = inventory.endpoints().next().expect("one endpoint");
        assert_eq!((stats.callers.len(), stats.other_callers_calls), (1, 1));
    }

    #[test]
    fn endpoints_keep_their_servers_tags_within_a_bound() {
        let mut inventory = Inventory::new(InventoryLimits::default());
        let observed = inventory
            .observe("svc", &exchange("GET", "/", "a", 200), None)
            .expect("counted");
        inventory.take_changed();
        inventory.tag(
            "svc",
            &observed.endpoint,
            [("team", "pets"), ("owner", "a@x")],
        );
        inventory.tag("svc", &observed.endpoint, [("team", "cats")]);
        let names: Vec<String> = (0..40).map(|n| format!("t{n}")).collect();
        inventory.tag(
            "svc",
            &observed.endpoint,
            names.iter().map(|name| (name.as_str(), "v")),
        );
        let stats = inventory
            .endpoint("svc", &observed.endpoint)
            .expect("inventoried");
        assert_eq!(stats.tags.get("team").map(String::as_str), Some("cats"));
        assert_eq!(stats.tags.len(), MAX_ENDPOINT_TAGS);
        assert_eq!(inventory.take_changed().len(), 1, "new tags are news");
        inventory.tag("svc", &observed.endpoint, [("team", "cats")]);
        assert!(inventory.take_changed().is_empty(), "the same tags are not");
    }

    #[test]
    fn hostile_methods_share_one_name() {
        let mut inventory = Inventory::new(InventoryLimits::default());
        let observed = inventory
            .observe("svc", &exchange("X-EVIL-LONG-METHOD", "/", "a", 200), None)
            .expect("counted");
        assert_eq!(observed.endpoint.method, "OTHER");
    }
}
