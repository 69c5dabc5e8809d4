//! A bounded map from source label to state that forgets the least recently used entry for a
//! new one, in constant time: entries live in a vector and are chained newest to oldest by
//! index, so neither a lookup nor an eviction scans.

use std::collections::HashMap;

/// No neighbour.
const NONE: u32 = u32::MAX;

struct Slot<S> {
    key: Box<str>,
    value: S,
    newer: u32,
    older: u32,
}

pub(super) struct Lru<S> {
    index: HashMap<Box<str>, u32>,
    slots: Vec<Slot<S>>,
    newest: u32,
    oldest: u32,
    capacity: usize,
}

impl<S> Lru<S> {
    /// At most `capacity` entries (at least one; no more than `u32::MAX - 1`, which the config
    /// bounds well below).
    pub fn new(capacity: usize) -> Self {
        Self {
            index: HashMap::new(),
            slots: Vec::new(),
            newest: NONE,
            oldest: NONE,
            capacity: capacity.clamp(1, (NONE - 1) as usize),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn values(&self) -> impl Iterator<Item = &S> {
        self.slots.iter().map(|slot| &slot.value)
    }

    /// The value under `key`, made the most recent; when absent, one made by `make`, taking the
    /// least recent entry's place if the map is full (that entry's value is returned with it).
    pub fn entry(&mut self, key: &str, make: impl FnOnce() -> S) -> (&mut S, Option<S>) {
        if let Some(&at) = self.index.get(key) {
            self.promote(at);
            return (&mut self.slots[at as usize].value, None);
        }
        if self.slots.len() < self.capacity {
            let at = self.slots.len() as u32;
            self.slots.push(Slot {
                key: key.into(),
                value: make(),
                newer: NONE,
                older: NONE,
            });
            self.index.insert(key.into(), at);
            self.attach_newest(at);
            return (&mut self.slots[at as usize].value, None);
        }
        let at = self.oldest;
        self.detach(at);
        let slot = &mut self.slots[at as usize];
        self.index.remove(&slot.key);
        slot.key = key.into();
        let evicted = std::mem::replace(&mut slot.value, make());
        self.index.insert(key.into(), at);
        self.attach_newest(at);
        (&mut self.slots[at as usize].value, Some(evicted))
    }

    fn promote(&mut self, at: u32) {
        if at != self.newest {
            self.detach(at);
            self.attach_newest(at);
        }
    }

    fn detach(&mut self, at: u32) {
        let (newer, older) = {
            let slot = &self.slots[at as usize];
            (slot.newer, slot.older)
        };
        match newer {
            NONE => self.newest = older,
            newer => self.slots[newer as usize].older = older,
        }
        match older {
            NONE => self.oldest = newer,
            older => self.slots[older as usize].newer = newer,
        }
    }

    fn attach_newest(&mut self, at: u32) {
        let previous = self.newest;
        let slot = &mut self.slots[at as usize];
        slot.newer = NONE;
        slot.older = previous;
        match previous {
            NONE => self.oldest = at,
            previous => self.slots[previous as usize].newer = at,
        }
        self.newest = at;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut lru = Lru::new(2);
        lru.entry("a", || 1);
        lru.entry("b", || 2);
        // "a" used again: "b" is now the oldest.
        assert_eq!(*lru.entry("a", || 0).0, 1);
        let (value, evicted) = lru.entry("c", || 3);
        assert_eq!((*value, evicted), (3, Some(2)));
        assert_eq!(lru.len(), 2);
        assert_eq!(*lru.entry("a", || 0).0, 1);
    }

    proptest! {
        /// Against a model that keeps keys in recency order, over any sequence of uses.
        #[test]
        fn behaves_as_a_recency_ordered_list(capacity in 1usize..6, keys in proptest::collection::vec(0u8..10, 0..200)) {
            let mut lru = Lru::new(capacity);
            let mut model: Vec<u8> = Vec::new();
            for key in keys {
                let name = key.to_string();
                let (value, evicted) = lru.entry(&name, || key);
                prop_assert_eq!(*value, key);
                let expected_eviction = if let Some(at) = model.iter().position(|k| *k == key) {
                    model.remove(at);
                    None
                } else if model.len() == capacity {
                    Some(model.remove(0))
                } else {
                    None
                };
                model.push(key);
                prop_assert_eq!(evicted, expected_eviction);
                prop_assert_eq!(lru.len(), model.len());
            }
        }
    }
}
