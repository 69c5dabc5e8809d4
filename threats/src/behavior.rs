//! Threats no single call shows: what one source does over many calls.
//!
//! - `threat.recon`: many distinct paths answered 404 or 405, or many distinct query parameter
//!   names, from one source within a window (path, method and parameter enumeration);
//! - `threat.bola_enumeration`: one source walking many distinct object ids of one endpoint
//!   template, or a run of consecutive numeric ids, within a window;
//! - `threat.credential_stuffing`: failed logins (401 or 403 on a call naming an account) for
//!   many distinct accounts from one source, or many for one account.
//!
//! The agent feeds every call as a [`Call`], with the time in it; a [`BehaviorDetector`] keeps
//! per-source state, bounded in sources (least recently seen forgotten first) and in items per
//! source (every set is cleared when its threshold fires, so none outgrows its threshold). Ids,
//! paths, parameter names and accounts are kept only as keyed hashes (SipHash-1-3 with the
//! agent's key); source labels are kept as given, cut to [`MAX_SOURCE_BYTES`]. Each kind reports
//! once per burst and source, then stays quiet until the source has made no call of that kind
//! for `rearm_after_quiet_secs`.

mod account;
mod bola;
mod lru;
mod recon;
mod stuffing;
mod window;

use std::hash::Hasher as _;

use intelligence::{Exchange, Severity};
use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;

pub use account::{basic_user, login_account};

use crate::ThreatKind;

/// Bytes of a source label kept: labels are workload names, ranges or addresses, and a hostile
/// label must not cost more memory than those.
pub const MAX_SOURCE_BYTES: usize = 128;
/// Largest threshold accepted: sets grow up to their threshold, so this bounds memory.
pub const MAX_THRESHOLD: u32 = 1024;
/// Longest window accepted, in seconds (a day).
pub const MAX_WINDOW_SECS: u64 = 86_400;
/// Most sources accepted for `max_sources`.
pub const MAX_SOURCES: usize = 1_000_000;
/// Most endpoints per source accepted for `endpoints_per_source`.
pub const MAX_ENDPOINTS_PER_SOURCE: usize = 64;

/// One observed call, as the behavioral detectors need it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Who made the call: the caller's identity label (`ns/workload`, `range/x`, an address).
    pub source: &'a str,
    pub service: &'a str,
    pub method: &'a str,
    /// The endpoint template the call was filed under (`/users/{id}`).
    pub template: &'a str,
    /// The path as sent, without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The object ids in the path, when the caller knows them; when empty, they are the path
    /// segments under the template's `{...}` segments.
    pub object_ids: &'a [&'a str],
    /// The response status; None when no response was seen.
    pub status: Option<u16>,
    /// The account a login call names ([`login_account`]), in clear: it is hashed at once and
    /// never kept.
    pub account: Option<&'a str>,
    pub time_unix_secs: u64,
}

impl<'a> Call<'a> {
    /// The call of `exchange`, filed under `service` and `template`, with no account (the
    /// agent reads it with [`login_account`] before credentials are redacted).
    pub fn from_exchange(exchange: &Exchange<'a>, service: &'a str, template: &'a str) -> Self {
        Self {
            source: &exchange.caller.peer,
            service,
            method: exchange.method,
            template,
            path: exchange.path,
            query: exchange.query,
            object_ids: &[],
            status: exchange.status,
            account: None,
            time_unix_secs: exchange.time_unix_secs,
        }
    }
}

/// Thresholds and windows. Every field has a default (`#[serde(default)]`), so a partial
/// document works.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct BehaviorConfig {
    /// Sources tracked at once; the least recently seen is forgotten for a new one. Default 4096.
    pub max_sources: usize,
    /// After reporting a burst, a kind stays quiet for a source until that source has made no
    /// call of the kind for this long. Default 300.
    pub rearm_after_quiet_secs: u64,
    pub recon: ReconConfig,
    pub bola: BolaConfig,
    pub credential_stuffing: CredentialStuffingConfig,
}

impl Default for BehaviorConfig {
    fn default() -> Self {
        Self {
            max_sources: 4096,
            rearm_after_quiet_secs: 300,
            recon: ReconConfig::default(),
            bola: BolaConfig::default(),
            credential_stuffing: CredentialStuffingConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ReconConfig {
    /// Default 60.
    pub window_secs: u64,
    /// Distinct method and path pairs answered 404 or 405 within the window. Default 20.
    pub missed_paths: u32,
    /// Distinct query parameter names within the window (at most 32 read per call). Default 50.
    pub parameter_names: u32,
}

impl Default for ReconConfig {
    fn default() -> Self {
        Self {
            window_secs: 60,
            missed_paths: 20,
            parameter_names: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct BolaConfig {
    /// Default 60.
    pub window_secs: u64,
    /// Distinct object ids of one endpoint within the window. Default 50.
    pub distinct_ids: u32,
    /// Consecutive numeric ids (each one more, or each one less, than the last) of one endpoint
    /// within the window. Default 20.
    pub consecutive_ids: u32,
    /// Endpoints with ids tracked per source at once; the least recently called is forgotten
    /// for a new one. Default 4.
    pub endpoints_per_source: usize,
}

impl Default for BolaConfig {
    fn default() -> Self {
        Self {
            window_secs: 60,
            distinct_ids: 50,
            consecutive_ids: 20,
            endpoints_per_source: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialStuffingConfig {
    /// Default 300.
    pub window_secs: u64,
    /// Distinct accounts with a failed login within the window. Default 10.
    pub failed_accounts: u32,
    /// Failed logins for one account, each within the window of the one before. Default 20.
    pub failures_per_account: u32,
}

impl Default for CredentialStuffingConfig {
    fn default() -> Self {
        Self {
            window_secs: 300,
            failed_accounts: 10,
            failures_per_account: 20,
        }
    }
}

impl BehaviorConfig {
    /// The most distinct items (paths, parameter names, ids, accounts) one source can hold; each
    /// takes 16 bytes.
    pub fn max_items_per_source(&self) -> usize {
        let threshold = |value: u32| usize::try_from(value).unwrap_or(usize::MAX);
        threshold(self.recon.missed_paths)
            .saturating_add(threshold(self.recon.parameter_names))
            .saturating_add(
                self.bola
                    .endpoints_per_source
                    .saturating_mul(threshold(self.bola.distinct_ids)),
            )
            .saturating_add(threshold(self.credential_stuffing.failed_accounts))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let as_u64 = |value: usize| u64::try_from(value).unwrap_or(u64::MAX);
        let checks: [(&'static str, u64, u64, u64); 12] = [
            (
                "maxSources",
                as_u64(self.max_sources),
                1,
                as_u64(MAX_SOURCES),
            ),
            (
                "rearmAfterQuietSecs",
                self.rearm_after_quiet_secs,
                1,
                MAX_WINDOW_SECS,
            ),
            (
                "recon.windowSecs",
                self.recon.window_secs,
                1,
                MAX_WINDOW_SECS,
            ),
            (
                "recon.missedPaths",
                self.recon.missed_paths.into(),
                2,
                MAX_THRESHOLD.into(),
            ),
            (
                "recon.parameterNames",
                self.recon.parameter_names.into(),
                2,
                MAX_THRESHOLD.into(),
            ),
            ("bola.windowSecs", self.bola.window_secs, 1, MAX_WINDOW_SECS),
            (
                "bola.distinctIds",
                self.bola.distinct_ids.into(),
                2,
                MAX_THRESHOLD.into(),
            ),
            (
                "bola.consecutiveIds",
                self.bola.consecutive_ids.into(),
                2,
                MAX_THRESHOLD.into(),
            ),
            (
                "bola.endpointsPerSource",
                as_u64(self.bola.endpoints_per_source),
                1,
                as_u64(MAX_ENDPOINTS_PER_SOURCE),
            ),
            (
                "credentialStuffing.windowSecs",
                self.credential_stuffing.window_secs,
                1,
                MAX_WINDOW_SECS,
            ),
            (
                "credentialStuffing.failedAccounts",
                self.credential_stuffing.failed_accounts.into(),
                2,
                MAX_THRESHOLD.into(),
            ),
            (
                "credentialStuffing.failuresPerAccount",
                self.credential_stuffing.failures_per_account.into(),
                2,
                MAX_THRESHOLD.into(),
            ),
        ];
        for (field, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::OutOfRange {
                    field,
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field} is {value}; it must be from {min} to {max}")]
    OutOfRange {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
}

/// One burst from one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BehaviorThreat {
    pub kind: ThreatKind,
    pub severity: Severity,
    /// Which rule fired (`recon.missed_paths`, `bola.consecutive_ids`, ...).
    pub rule: &'static str,
    /// The source's label (cut to [`MAX_SOURCE_BYTES`]).
    pub source: String,
    /// The service of the call that completed the burst.
    pub service: String,
    /// `METHOD template` for BOLA enumeration; None for the kinds that span endpoints.
    pub endpoint: Option<String>,
    /// What was counted: distinct paths, names, ids or accounts, or failed logins.
    pub count: u32,
    /// Seconds from the first counted call to the last; for
    /// `credential_stuffing.failures_per_account`, the window each failure was within of the
    /// one before (the first failure's time is not kept).
    pub span_secs: u32,
    /// The counts in words: `50 distinct ids of GET /users/{id} in 12 s, 48 answered 2xx`.
    pub message: String,
    /// When the burst was reported (the call's time).
    pub time_unix_secs: u64,
}

/// What the detectors hold and what they had to forget, for the agent to report loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BehaviorStats {
    /// Sources with state now.
    pub sources: usize,
    /// Distinct items (paths, parameter names, ids, accounts) held now, over all sources.
    pub items: usize,
    /// Sources forgotten, for newer ones, while their state still counted: a burst they were in
    /// may go unreported.
    pub sources_evicted: u64,
    /// Endpoints whose ids a source was still counting forgotten for a newer endpoint (more than
    /// `bola.endpoints_per_source` walked at once).
    pub endpoints_evicted: u64,
    /// Bursts reported.
    pub findings: u64,
}

/// A burst as one detector sees it; [`BehaviorDetector`] adds who and when.
struct Burst {
    kind: ThreatKind,
    severity: Severity,
    rule: &'static str,
    endpoint: Option<String>,
    count: u32,
    span_secs: u32,
    message: String,
}

/// Hashes of what must be compared but not kept: keyed, so that guessing a small id or a
/// known account from its hash needs the agent's key.
struct Keyed {
    key: [u8; 16],
}

/// Domains of the keyed hashes, so that equal bytes of different meaning never collide.
#[derive(Clone, Copy)]
enum Domain {
    MissedPath = 1,
    ParameterName,
    Endpoint,
    ObjectIds,
    Number,
    Account,
}

impl Keyed {
    /// A hasher to feed parts with [`write_part`].
    fn hasher(&self, domain: Domain) -> SipHasher13 {
        let mut hasher = SipHasher13::new_with_key(&self.key);
        hasher.write_u8(domain as u8);
        hasher
    }

    fn hash<'p>(&self, domain: Domain, parts: impl IntoIterator<Item = &'p [u8]>) -> u64 {
        let mut hasher = self.hasher(domain);
        for part in parts {
            write_part(&mut hasher, part);
        }
        hasher.finish()
    }
}

fn write_part(hasher: &mut SipHasher13, part: &[u8]) {
    // The length first: ("ab", "c") and ("a", "bc") are different.
    hasher.write_usize(part.len());
    hasher.write(part);
}

/// Seconds as the state keeps them: u32 until 2106, half the bytes of u64 per item.
fn seconds(unix_secs: u64) -> u32 {
    u32::try_from(unix_secs).unwrap_or(u32::MAX)
}

/// Settings in the units the detectors compare with.
struct Limits {
    rearm_quiet: u32,
    /// A source idle this long holds nothing that still counts.
    idle_after: u32,
    recon: recon::Limits,
    bola: bola::Limits,
    stuffing: stuffing::Limits,
}

impl Limits {
    fn of(config: &BehaviorConfig) -> Self {
        let recon = recon::Limits {
            window: seconds(config.recon.window_secs),
            missed_paths: config.recon.missed_paths,
            parameter_names: config.recon.parameter_names,
        };
        let bola = bola::Limits {
            window: seconds(config.bola.window_secs),
            distinct_ids: config.bola.distinct_ids,
            consecutive_ids: config.bola.consecutive_ids,
            endpoints: config.bola.endpoints_per_source,
        };
        let stuffing = stuffing::Limits {
            window: seconds(config.credential_stuffing.window_secs),
            failed_accounts: config.credential_stuffing.failed_accounts,
            failures_per_account: config.credential_stuffing.failures_per_account,
        };
        let rearm_quiet = seconds(config.rearm_after_quiet_secs);
        Self {
            rearm_quiet,
            idle_after: rearm_quiet
                .max(recon.window)
                .max(bola.window)
                .max(stuffing.window),
            recon,
            bola,
            stuffing,
        }
    }
}

/// Everything kept about one source.
#[derive(Default)]
struct SourceState {
    /// The latest time seen: calls may arrive slightly out of order, and time never runs
    /// backwards inside a source's state.
    last_seen: u32,
    recon: recon::Recon,
    bola: bola::Bola,
    stuffing: stuffing::Stuffing,
}

impl SourceState {
    fn items(&self) -> usize {
        self.recon.items() + self.bola.items() + self.stuffing.items()
    }
}

/// The behavioral detectors over every source's calls.
pub struct BehaviorDetector {
    keyed: Keyed,
    limits: Limits,
    sources: lru::Lru<SourceState>,
    sources_evicted: u64,
    endpoints_evicted: u64,
    findings: u64,
}

impl BehaviorDetector {
    /// Detectors with `config`, hashing with `key` (16 random bytes the agent keeps secret).
    pub fn new(config: &BehaviorConfig, key: [u8; 16]) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            keyed: Keyed { key },
            limits: Limits::of(config),
            sources: lru::Lru::new(config.max_sources),
            sources_evicted: 0,
            endpoints_evicted: 0,
            findings: 0,
        })
    }

    /// Feeds one call; returns the bursts it completes (at most one per kind).
    pub fn observe(&mut self, call: &Call<'_>) -> Vec<BehaviorThreat> {
        let source = cut(call.source, MAX_SOURCE_BYTES);
        let (state, evicted) = self.sources.entry(source, SourceState::default);
        let now = seconds(call.time_unix_secs).max(state.last_seen);
        if let Some(evicted) = evicted
            && now.saturating_sub(evicted.last_seen) < self.limits.idle_after
            && evicted.items() > 0
        {
            self.sources_evicted += 1;
        }
        state.last_seen = now;
        let context = Context {
            keyed: &self.keyed,
            now,
            rearm_quiet: self.limits.rearm_quiet,
        };
        let recon = state.recon.observe(call, &context, &self.limits.recon);
        let bola = state.bola.observe(call, &context, &self.limits.bola);
        self.endpoints_evicted += u64::from(bola.endpoint_evicted);
        let stuffing = state
            .stuffing
            .observe(call, &context, &self.limits.stuffing);
        let threats: Vec<BehaviorThreat> = [recon, bola.burst, stuffing]
            .into_iter()
            .flatten()
            .map(|burst| BehaviorThreat {
                kind: burst.kind,
                severity: burst.severity,
                rule: burst.rule,
                source: source.to_owned(),
                service: call.service.to_owned(),
                endpoint: burst.endpoint,
                count: burst.count,
                span_secs: burst.span_secs,
                message: burst.message,
                time_unix_secs: call.time_unix_secs,
            })
            .collect();
        self.findings += threats.len() as u64;
        threats
    }

    /// What is held now and what was lost so far.
    pub fn stats(&self) -> BehaviorStats {
        BehaviorStats {
            sources: self.sources.len(),
            items: self.sources.values().map(SourceState::items).sum(),
            sources_evicted: self.sources_evicted,
            endpoints_evicted: self.endpoints_evicted,
            findings: self.findings,
        }
    }
}

/// What every detector needs besides the call and its own limits.
struct Context<'k> {
    keyed: &'k Keyed,
    now: u32,
    rearm_quiet: u32,
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;
