//! Where in the YAML text each field is, so errors found after parsing (an undefined identity,
//! a duplicate CIDR) still name a line.

use std::collections::HashMap;

use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser},
    scanner::Marker,
};

/// Line (1-based) and column (1-based) of every value, by path: `rules[0].to`,
/// `identities.db.cidrs[1]`, the same notation errors use.
#[derive(Debug, Default)]
pub struct Locations {
    by_path: HashMap<String, (usize, usize)>,
}

impl Locations {
    /// Never fails: text that does not parse as YAML simply has no locations (the parse error
    /// itself carries one).
    pub fn of(text: &str) -> Self {
        let mut walker = Walker::default();
        let _ = Parser::new_from_str(text).load(&mut walker, false);
        Self {
            by_path: walker.by_path,
        }
    }

    pub fn get(&self, path: &str) -> Option<(usize, usize)> {
        self.by_path.get(path).copied()
    }

    /// Where `path` is or, for a field that is missing, where the nearest enclosing value is.
    pub fn nearest(&self, mut path: &str) -> Option<(usize, usize)> {
        loop {
            if let Some(location) = self.get(path) {
                return Some(location);
            }
            path = &path[..path.rfind(['.', '['])?];
        }
    }
}

enum Container {
    /// Path of the mapping, and the key whose value comes next (None: a key comes next).
    Mapping {
        path: String,
        key: Option<String>,
    },
    Sequence {
        path: String,
        next_index: usize,
    },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Container>,
    by_path: HashMap<String, (usize, usize)>,
}

impl Walker {
    /// The path of the value now starting, or None if it is a mapping key.
    fn value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Container::Mapping { path, key }) => key.take().map(|key| join(path, &key)),
            Some(Container::Sequence { path, next_index }) => {
                let item = format!("{path}[{next_index}]");
                *next_index += 1;
                Some(item)
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let position = (mark.line(), mark.col() + 1);
        match event {
            Event::Scalar(value, ..) => match self.value_path() {
                Some(path) => {
                    self.by_path.insert(path, position);
                }
                None => {
                    if let Some(Container::Mapping { key, .. }) = self.stack.last_mut() {
                        *key = Some(value);
                    }
                }
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.value_path().unwrap_or_default();
                self.by_path.insert(path.clone(), position);
                self.stack
                    .push(if matches!(event, Event::MappingStart(..)) {
                        Container::Mapping { path, key: None }
                    } else {
                        Container::Sequence {
                            path,
                            next_index: 0,
                        }
                    });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                let _ = self.value_path();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_point_at_their_values() {
        let text = "identities:\n  db: { cidrs: [\"198.18.3.10/32\", \"fd00::1\"] }\nrules:\n  - name: a\n    to: db\n  - name: b\n    to: nowhere\n";
        let locations = Locations::of(text);
        assert_eq!(locations.get("rules[1].to"), Some((7, 9)));
        assert_eq!(locations.get("rules[0].name"), Some((4, 11)));
        assert_eq!(
            locations
                .get("identities.db.cidrs[1]")
                .map(|(line, _)| line),
            Some(2)
        );
        assert_eq!(locations.get("rules[2]"), None);
    }

    #[test]
    fn text_that_is_not_yaml_keeps_what_came_before_the_error() {
        let locations = Locations::of("name: moat\nrules: [unclosed, {");
        assert_eq!(locations.get("name"), Some((1, 7)));
        let _ = Locations::of(":\n- : [\n\t{");
    }
}
