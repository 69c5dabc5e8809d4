//! Which findings were said and when, so that one is not said again within its window (a
//! detection file's `repeatAfter`).

use std::collections::HashMap;

/// Hashes of findings' identities and when each was last said (Unix seconds), at most
/// `capacity` of them.
#[derive(Debug)]
pub struct Repeats {
    said: HashMap<u64, u64>,
    capacity: usize,
    /// Findings held back because they were said within their window.
    pub suppressed: u64,
    /// Times the memory was full of findings still within their window and was forgotten
    /// (each may then repeat once early).
    pub resets: u64,
}

impl Repeats {
    pub fn new(capacity: usize) -> Self {
        Self {
            said: HashMap::new(),
            capacity,
            suppressed: 0,
            resets: 0,
        }
    }

    /// Whether the finding hashed as `said` is news at `now`: not said within `window`
    /// seconds. A finding that is news is remembered as said now.
    pub fn first_saying(&mut self, said: u64, now: u64, window: u64) -> bool {
        if let Some(last) = self.said.get_mut(&said) {
            if now.saturating_sub(*last) < window {
                self.suppressed += 1;
                return false;
            }
            *last = now;
            return true;
        }
        if self.said.len() >= self.capacity {
            self.said
                .retain(|_, last| now.saturating_sub(*last) < window);
            if self.said.len() >= self.capacity {
                self.said.clear();
                self.resets += 1;
            }
        }
        self.said.insert(said, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_is_news_again_only_after_its_window() {
        let mut repeats = Repeats::new(8);
        assert!(repeats.first_saying(1, 100, 60));
        assert!(!repeats.first_saying(1, 159, 60));
        assert!(repeats.first_saying(1, 160, 60));
        assert!(repeats.first_saying(2, 160, 60));
        assert_eq!((repeats.suppressed, repeats.resets), (1, 0));
    }

    #[test]
    fn a_full_memory_forgets_expired_findings_first_then_everything_and_counts_it() {
        let mut repeats = Repeats::new(2);
        assert!(repeats.first_saying(1, 0, 10));
        assert!(repeats.first_saying(2, 5, 10));
        // 1 has expired: it makes room, 2 is still remembered.
        assert!(repeats.first_saying(3, 12, 10));
        assert!(!repeats.first_saying(2, 13, 10));
        assert_eq!(repeats.resets, 0);
        // 2 and 3 are both within their window: the memory is forgotten.
        assert!(repeats.first_saying(4, 14, 10));
        assert_eq!(repeats.resets, 1);
        assert!(
            repeats.first_saying(2, 14, 10),
            "forgotten, so said again early"
        );
    }
}
