//! `threat.credential_stuffing`: failed logins from one source for many accounts (leaked
//! credential lists tried in turn, or one password sprayed over many users), or many for one
//! account (guessing). A person mistypes their own password a few times; only a list fails for
//! dozens of accounts.

use intelligence::Severity;

use super::window::{Alarm, Recent};
use super::{Burst, Call, Context, Domain};
use crate::ThreatKind;

pub(super) struct Limits {
    pub window: u32,
    pub failed_accounts: u32,
    pub failures_per_account: u32,
}

#[derive(Default)]
pub(super) struct Stuffing {
    alarm: Alarm,
    /// Accounts with a failed login lately; `hits` counts the failures, `succeeded` a later
    /// success.
    failed: Recent,
}

impl Stuffing {
    pub fn items(&self) -> usize {
        self.failed.len()
    }

    pub fn observe(
        &mut self,
        call: &Call<'_>,
        context: &Context<'_>,
        limits: &Limits,
    ) -> Option<Burst> {
        let account = call.account?.trim();
        if account.is_empty() {
            return None;
        }
        // Accounts are compared as their owners type them: the case of an email address or a
        // user name rarely matters to the service.
        let account = account.to_lowercase();
        let hash = context.keyed.hash(Domain::Account, [account.as_bytes()]);
        let now = context.now;
        match call.status {
            Some(200..300) => {
                if let Some(failed) = self.failed.find(hash) {
                    failed.succeeded = true;
                }
                return None;
            }
            Some(401 | 403) => {}
            _ => return None,
        }
        if self.alarm.holds(now, context.rearm_quiet) {
            return None;
        }
        self.failed.expire(now.saturating_sub(limits.window));
        let failed = self.failed.touch(hash, now);
        failed.hits = failed.hits.saturating_add(1);
        let (hits, succeeded_after) = (u32::from(failed.hits), failed.succeeded);
        let accounts = self.failed.len();
        let burst = if accounts >= limits.failed_accounts as usize {
            let span = self.failed.span(now);
            let succeeded = self.failed.succeeded();
            Some(Burst {
                kind: ThreatKind::CredentialStuffing,
                // A success among the failures is a credential that worked.
                severity: if succeeded > 0 {
                    Severity::Critical
                } else {
                    Severity::High
                },
                rule: "credential_stuffing.failed_accounts",
                endpoint: None,
                count: accounts as u32,
                span_secs: span,
                message: format!(
                    "failed logins for {accounts} distinct accounts in {span} s, {succeeded} of them then logged in"
                ),
            })
        } else if hits >= limits.failures_per_account {
            Some(Burst {
                kind: ThreatKind::CredentialStuffing,
                severity: if succeeded_after {
                    Severity::Critical
                } else {
                    Severity::High
                },
                rule: "credential_stuffing.failures_per_account",
                endpoint: None,
                count: hits,
                span_secs: limits.window,
                message: format!(
                    "{hits} failed logins for one account, each within {} s of the one before",
                    limits.window
                ),
            })
        } else {
            None
        };
        if burst.is_some() {
            self.alarm.raise();
            self.failed.clear();
        }
        burst
    }
}
