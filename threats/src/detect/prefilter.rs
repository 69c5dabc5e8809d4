//! Which detectors a value wakes: one pass of an Aho-Corasick automaton whose states carry the
//! detectors of every pattern ending there.
//!
//! A general overlapping search stops at every match to report it, and ordinary prose matches
//! a trigger every few bytes (an apostrophe, `=`, `or `); only the union of the detectors woken
//! matters here, so each transition carries it and the pass never stops.

/// Bits of the transition word holding the next state; the byte above holds its detectors.
const STATE_BITS: u32 = 24;
const STATE_MASK: u32 = (1 << STATE_BITS) - 1;

/// A full DFA over byte classes, built once from the triggers.
pub(super) struct Prefilter {
    /// Each byte's class; bytes in no pattern share class 0.
    classes: [u8; 256],
    /// Indexed by `state + class`, states premultiplied by `class_count`: the next state in the
    /// low [`STATE_BITS`], the detectors it wakes in the byte above.
    transitions: Vec<u32>,
}

impl Prefilter {
    /// `patterns` with the detector bits each wakes; case-sensitive, as the text is matched.
    pub(super) fn new<'p>(patterns: impl IntoIterator<Item = (&'p [u8], u8)>) -> Self {
        let patterns: Vec<(&[u8], u8)> = patterns.into_iter().collect();
        let mut classes = [0u8; 256];
        let mut class_count = 1;
        for (pattern, _) in &patterns {
            for &byte in *pattern {
                if classes[usize::from(byte)] == 0 {
                    classes[usize::from(byte)] =
                        u8::try_from(class_count).expect("fewer than 256 pattern bytes");
                    class_count += 1;
                }
            }
        }
        // The trie: `children[state * class_count + class]`, 0 for none (the root is no child).
        let mut children: Vec<usize> = vec![0; class_count];
        let mut wakes: Vec<u8> = vec![0];
        for (pattern, bits) in &patterns {
            let mut state = 0;
            for &byte in *pattern {
                let slot = state * class_count + usize::from(classes[usize::from(byte)]);
                if children[slot] == 0 {
                    children[slot] = wakes.len();
                    wakes.push(0);
                    children.extend(std::iter::repeat_n(0, class_count));
                }
                state = children[slot];
            }
            wakes[state] |= bits;
        }
        // Breadth first, so that a state's failure (a shorter suffix) is complete before it:
        // a missing child goes where the failure's goes, and a state wakes what its failure does.
        let mut next = vec![0usize; wakes.len() * class_count];
        let mut failure = vec![0usize; wakes.len()];
        let mut queue = std::collections::VecDeque::new();
        for class in 0..class_count {
            let child = children[class];
            next[class] = child;
            if child != 0 {
                queue.push_back(child);
            }
        }
        while let Some(state) = queue.pop_front() {
            wakes[state] |= wakes[failure[state]];
            for class in 0..class_count {
                let slot = state * class_count + class;
                let child = children[slot];
                let fallback = next[failure[state] * class_count + class];
                if child == 0 {
                    next[slot] = fallback;
                } else {
                    failure[child] = fallback;
                    next[slot] = child;
                    queue.push_back(child);
                }
            }
        }
        let transitions = next
            .iter()
            .map(|&state| {
                let premultiplied =
                    u32::try_from(state * class_count).expect("prefilter states fit");
                assert!(premultiplied <= STATE_MASK, "prefilter states fit");
                premultiplied | (u32::from(wakes[state]) << STATE_BITS)
            })
            .collect();
        Self {
            classes,
            transitions,
        }
    }

    /// The union of the detector bits of every pattern `text` holds.
    pub(super) fn wakes(&self, text: &[u8]) -> u8 {
        let mut state = 0usize;
        let mut woken = 0u8;
        for &byte in text {
            let transition = self.transitions[state + usize::from(self.classes[usize::from(byte)])];
            state = (transition & STATE_MASK) as usize;
            woken |= (transition >> STATE_BITS) as u8;
        }
        woken
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const PATTERNS: &[(&str, u8)] = &[
        ("'", 1),
        ("or ", 2),
        ("select", 4),
        ("elect", 8),
        ("..", 16),
        ("/.", 32),
        ("://", 64),
        ("r", 128),
        ("se", 2),
    ];

    fn prefilter() -> Prefilter {
        Prefilter::new(PATTERNS.iter().map(|(p, bits)| (p.as_bytes(), *bits)))
    }

    fn naive(text: &str) -> u8 {
        PATTERNS
            .iter()
            .filter(|(pattern, _)| text.contains(pattern))
            .fold(0, |bits, (_, wakes)| bits | wakes)
    }

    #[test]
    fn patterns_inside_others_and_across_restarts_are_found() {
        let prefilter = prefilter();
        assert_eq!(prefilter.wakes(b""), 0);
        assert_eq!(prefilter.wakes(b"plain words"), 128);
        // `elect` ends inside `select`; `se` starts it.
        assert_eq!(prefilter.wakes(b"select"), 4 | 8 | 2);
        // `sel` fails, and the suffix `el` restarts `elect`.
        assert_eq!(prefilter.wakes(b"selelect"), 8 | 2);
        assert_eq!(prefilter.wakes(b"a./..b"), 16 | 32);
        assert_eq!(prefilter.wakes(b":/ /"), 0);
    }

    proptest! {
        #[test]
        fn wakes_every_pattern_the_text_holds(text in "[ './:lrosect]{0,40}") {
            prop_assert_eq!(prefilter().wakes(text.as_bytes()), naive(&text));
        }
    }
}
