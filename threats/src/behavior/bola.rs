//! `threat.bola_enumeration`: one source walking the objects of one endpoint. A client reads
//! the objects it owns, a handful at a time; a caller trying whether the API checks ownership
//! (broken object-level authorization) asks for many ids, often one after another.

use std::hash::Hasher as _;

use intelligence::Severity;

use super::window::{Alarm, Recent};
use super::{Burst, Call, Context, Domain, write_part};
use crate::ThreatKind;

/// Object ids read per call (a path rarely nests more).
const MAX_IDS_PER_CALL: usize = 8;

pub(super) struct Limits {
    pub window: u32,
    pub distinct_ids: u32,
    pub consecutive_ids: u32,
    pub endpoints: usize,
}

/// What [`Bola::observe`] saw: a burst, and whether an endpoint still counting was forgotten.
pub(super) struct Observed {
    pub burst: Option<Burst>,
    pub endpoint_evicted: bool,
}

#[derive(Default)]
pub(super) struct Bola {
    alarm: Alarm,
    /// Least recently called first.
    walks: Vec<Walk>,
}

/// The ids one source asked of one endpoint.
struct Walk {
    endpoint: u64,
    ids: Recent,
    run: Run,
}

/// The current run of consecutive numeric ids. The neighbours of the last id are kept as
/// hashes, so the run is followed without keeping the id itself.
#[derive(Default)]
struct Run {
    last: u64,
    above: u64,
    below: u64,
    /// +1 walking up, -1 walking down, 0 not known yet.
    direction: i8,
    length: u32,
    started: u32,
    succeeded: u32,
}

impl Run {
    /// Extends the run with numeric id `hash` (whose neighbours hash to `above` and `below`).
    fn step(&mut self, ids: [u64; 3], now: u32, window: u32, succeeded: bool) {
        let [hash, above, below] = ids;
        if self.length > 0 && hash == self.last {
            return;
        }
        let direction = match () {
            () if self.length > 0 && hash == self.above => 1,
            () if self.length > 0 && hash == self.below => -1,
            () => 0,
        };
        let continues = direction != 0
            && (self.direction == 0 || self.direction == direction)
            && now.saturating_sub(self.started) <= window;
        if continues {
            self.length += 1;
            self.direction = direction;
        } else {
            *self = Self {
                length: 1,
                started: now,
                ..Self::default()
            };
        }
        self.succeeded += u32::from(succeeded);
        self.last = hash;
        self.above = above;
        self.below = below;
    }
}

impl Bola {
    pub fn items(&self) -> usize {
        self.walks.iter().map(|walk| walk.ids.len()).sum()
    }

    pub fn observe(&mut self, call: &Call<'_>, context: &Context<'_>, limits: &Limits) -> Observed {
        let mut observed = Observed {
            burst: None,
            endpoint_evicted: false,
        };
        let mut ids = context.keyed.hasher(Domain::ObjectIds);
        let mut last = None;
        for_each_id(call, |id| {
            write_part(&mut ids, id.as_bytes());
            last = Some(id);
        });
        let Some(last) = last else {
            return observed;
        };
        let now = context.now;
        if self.alarm.holds(now, context.rearm_quiet) {
            return observed;
        }
        let endpoint = context.keyed.hash(
            Domain::Endpoint,
            [
                call.service.as_bytes(),
                call.method.as_bytes(),
                call.template.as_bytes(),
            ],
        );
        let since = now.saturating_sub(limits.window);
        let walk = match self.walks.iter().position(|walk| walk.endpoint == endpoint) {
            Some(index) => {
                let walk = self.walks.remove(index);
                self.walks.push(walk);
                self.walks.len() - 1
            }
            None => {
                if self.walks.len() >= limits.endpoints {
                    let mut forgotten = self.walks.remove(0);
                    forgotten.ids.expire(since);
                    observed.endpoint_evicted = forgotten.ids.len() > 0;
                }
                self.walks.push(Walk {
                    endpoint,
                    ids: Recent::default(),
                    run: Run::default(),
                });
                self.walks.len() - 1
            }
        };
        let walk = &mut self.walks[walk];
        let succeeded = call
            .status
            .is_some_and(|status| (200..300).contains(&status));
        walk.ids.expire(since);
        let seen = walk.ids.touch(ids.finish(), now);
        seen.succeeded |= succeeded;
        if let Ok(number) = last.parse::<u64>() {
            let hash = |n: u64| {
                context
                    .keyed
                    .hash(Domain::Number, [n.to_le_bytes().as_slice()])
            };
            walk.run.step(
                [
                    hash(number),
                    hash(number.wrapping_add(1)),
                    hash(number.wrapping_sub(1)),
                ],
                now,
                limits.window,
                succeeded,
            );
        }
        let endpoint = format!("{} {}", call.method, call.template);
        let distinct = walk.ids.len();
        observed.burst = if distinct >= limits.distinct_ids as usize {
            let span = walk.ids.span(now);
            let succeeded = walk.ids.succeeded();
            Some(Burst {
                kind: ThreatKind::BolaEnumeration,
                severity: severity(succeeded, distinct),
                rule: "bola.distinct_ids",
                message: format!(
                    "{distinct} distinct ids of {endpoint} in {span} s, {succeeded} answered 2xx"
                ),
                endpoint: Some(endpoint),
                count: distinct as u32,
                span_secs: span,
            })
        } else if walk.run.length >= limits.consecutive_ids {
            let run = &walk.run;
            let span = now.saturating_sub(run.started);
            Some(Burst {
                kind: ThreatKind::BolaEnumeration,
                severity: severity(run.succeeded as usize, run.length as usize),
                rule: "bola.consecutive_ids",
                message: format!(
                    "{} consecutive ids of {endpoint} in {span} s, {} answered 2xx",
                    run.length, run.succeeded
                ),
                endpoint: Some(endpoint),
                count: run.length,
                span_secs: span,
            })
        } else {
            None
        };
        if observed.burst.is_some() {
            self.alarm.raise();
            self.walks = Vec::new();
        }
        observed
    }
}

/// High when most of the ids asked were answered: objects that were not the caller's were
/// probably served. Medium when most were refused or missing: an attempt.
fn severity(succeeded: usize, asked: usize) -> Severity {
    if succeeded * 2 > asked {
        Severity::High
    } else {
        Severity::Medium
    }
}

/// Calls `each` with the call's object ids: those given, or the path segments under the
/// template's `{...}` segments; at most [`MAX_IDS_PER_CALL`].
fn for_each_id<'a>(call: &Call<'a>, mut each: impl FnMut(&'a str)) {
    if !call.object_ids.is_empty() {
        call.object_ids
            .iter()
            .take(MAX_IDS_PER_CALL)
            .for_each(|id| each(id));
        return;
    }
    call.template
        .split('/')
        .zip(call.path.split('/'))
        .filter(|(template, _)| template.starts_with('{') && template.ends_with('}'))
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty())
        .take(MAX_IDS_PER_CALL)
        .for_each(each);
}
