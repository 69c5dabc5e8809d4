//! What every detector keeps per source: distinct items seen lately, as keyed hashes with the
//! second each was last seen, and the alarm that makes a burst one finding.

/// One distinct item (a path, a parameter name, an id, an account), never in clear.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    pub hash: u64,
    /// Unix seconds when last seen.
    pub at: u32,
    /// Calls that counted against it (failed logins of an account).
    pub hits: u16,
    /// Whether a call for it was answered 2xx.
    pub succeeded: bool,
}

/// Distinct items seen within a window, oldest first.
///
/// A plain vector: sets stay under their threshold (a few dozen items), where a linear scan of
/// 16-byte items beats hashing, and the order makes expiry a cut at the front.
#[derive(Debug, Default)]
pub(super) struct Recent {
    items: Vec<Seen>,
}

impl Recent {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Forgets the items last seen before `since`. Items are in the order they were last seen
    /// and a source's time never runs backwards, so the stale ones are a prefix.
    pub fn expire(&mut self, since: u32) {
        let stale = self.items.partition_point(|item| item.at < since);
        self.items.drain(..stale);
    }

    /// Records `hash` as seen at `now` (which must not be before any item's time), moving it to
    /// the newest end, and returns it.
    pub fn touch(&mut self, hash: u64, now: u32) -> &mut Seen {
        let seen = match self.items.iter().position(|item| item.hash == hash) {
            Some(index) => Seen {
                at: now,
                ..self.items.remove(index)
            },
            None => Seen {
                hash,
                at: now,
                hits: 0,
                succeeded: false,
            },
        };
        let index = self.items.len();
        self.items.push(seen);
        &mut self.items[index]
    }

    pub fn find(&mut self, hash: u64) -> Option<&mut Seen> {
        self.items.iter_mut().find(|item| item.hash == hash)
    }

    /// Seconds from the oldest item to `now`.
    pub fn span(&self, now: u32) -> u32 {
        self.items
            .first()
            .map_or(0, |oldest| now.saturating_sub(oldest.at))
    }

    pub fn succeeded(&self) -> usize {
        self.items.iter().filter(|item| item.succeeded).count()
    }

    /// Forgets everything, memory included: after a burst is reported, the source may be an
    /// attacker holding its sets at their threshold.
    pub fn clear(&mut self) {
        self.items = Vec::new();
    }
}

/// Makes a burst one finding: raised when one is reported, it holds while the source keeps
/// making calls of the kind, and re-arms once the source has been quiet for a while.
#[derive(Debug, Default)]
pub(super) struct Alarm {
    raised: bool,
    last_event: u32,
}

impl Alarm {
    /// Records a call of the kind at `now`; whether the alarm still holds (the call belongs
    /// to a burst already reported).
    pub fn holds(&mut self, now: u32, quiet: u32) -> bool {
        if self.raised && now.saturating_sub(self.last_event) >= quiet {
            self.raised = false;
        }
        self.last_event = now;
        self.raised
    }

    pub fn raise(&mut self) {
        self.raised = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_moves_an_item_to_the_newest_end_and_expiry_cuts_the_oldest() {
        let mut recent = Recent::default();
        recent.touch(1, 10);
        recent.touch(2, 20);
        recent.touch(1, 30).hits += 1;
        assert_eq!(recent.len(), 2);
        assert_eq!(recent.span(30), 10);
        recent.expire(25);
        assert_eq!(recent.len(), 1);
        assert_eq!(recent.find(1).map(|seen| seen.hits), Some(1));
        assert!(recent.find(2).is_none());
    }

    #[test]
    fn an_alarm_holds_while_calls_continue_and_rearms_after_quiet() {
        let mut alarm = Alarm::default();
        assert!(!alarm.holds(0, 100));
        alarm.raise();
        assert!(alarm.holds(50, 100));
        assert!(alarm.holds(149, 100));
        assert!(!alarm.holds(249, 100));
    }
}
