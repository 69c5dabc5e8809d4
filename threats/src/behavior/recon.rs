//! `threat.recon`: a source mapping the API rather than using it. Clients that know an API
//! rarely hit paths that do not exist, and use a small, stable set of query parameters;
//! scanners and parameter miners try many of both.

use intelligence::Severity;

use super::window::{Alarm, Recent};
use super::{Burst, Call, Context, Domain};
use crate::ThreatKind;

/// Query parameter names read per call: a miner sends hundreds at once, and a few dozen per
/// call already reach the threshold within the window.
const MAX_NAMES_PER_CALL: usize = 32;
/// Bytes of a parameter name hashed: longer names are as distinct by their start.
const MAX_NAME_BYTES: usize = 64;

pub(super) struct Limits {
    pub window: u32,
    pub missed_paths: u32,
    pub parameter_names: u32,
}

#[derive(Default)]
pub(super) struct Recon {
    alarm: Alarm,
    missed_paths: Recent,
    parameter_names: Recent,
}

impl Recon {
    pub fn items(&self) -> usize {
        self.missed_paths.len() + self.parameter_names.len()
    }

    pub fn observe(
        &mut self,
        call: &Call<'_>,
        context: &Context<'_>,
        limits: &Limits,
    ) -> Option<Burst> {
        let missed = matches!(call.status, Some(404 | 405));
        let mut names = parameter_names(call.query).peekable();
        if !missed && names.peek().is_none() {
            return None;
        }
        let now = context.now;
        if self.alarm.holds(now, context.rearm_quiet) {
            return None;
        }
        let since = now.saturating_sub(limits.window);
        self.missed_paths.expire(since);
        self.parameter_names.expire(since);
        let mut burst = None;
        if missed {
            let hash = context.keyed.hash(
                Domain::MissedPath,
                [call.method.as_bytes(), call.path.as_bytes()],
            );
            self.missed_paths.touch(hash, now);
            let count = self.missed_paths.len();
            if count >= limits.missed_paths as usize {
                let span = self.missed_paths.span(now);
                burst = Some(Burst {
                    kind: ThreatKind::Recon,
                    severity: Severity::Medium,
                    rule: "recon.missed_paths",
                    endpoint: None,
                    count: count as u32,
                    span_secs: span,
                    message: format!("{count} distinct paths answered 404 or 405 in {span} s"),
                });
            }
        }
        for name in names {
            if burst.is_some() {
                break;
            }
            let name = &name[..name.len().min(MAX_NAME_BYTES)];
            self.parameter_names
                .touch(context.keyed.hash(Domain::ParameterName, [name]), now);
            let count = self.parameter_names.len();
            if count >= limits.parameter_names as usize {
                let span = self.parameter_names.span(now);
                burst = Some(Burst {
                    kind: ThreatKind::Recon,
                    severity: Severity::Medium,
                    rule: "recon.parameter_names",
                    endpoint: None,
                    count: count as u32,
                    span_secs: span,
                    message: format!("{count} distinct query parameter names in {span} s"),
                });
            }
        }
        if burst.is_some() {
            self.alarm.raise();
            self.missed_paths.clear();
            self.parameter_names.clear();
        }
        burst
    }
}

/// The names of `query`'s parameters as sent (`a=1&b&c=` gives `a`, `b`, `c`), at most
/// [`MAX_NAMES_PER_CALL`].
fn parameter_names(query: Option<&str>) -> impl Iterator<Item = &[u8]> {
    query
        .unwrap_or_default()
        .split('&')
        .map(|pair| {
            pair.split_once('=')
                .map_or(pair, |(name, _)| name)
                .as_bytes()
        })
        .filter(|name| !name.is_empty())
        .take(MAX_NAMES_PER_CALL)
}
