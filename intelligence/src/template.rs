//! Endpoint templates: concrete request paths folded into the shape an API defines them by.
//!
//! A segment is a placeholder when its form says it is a value: integers, UUIDs, hex and
//! base64-like ids (`{id}`), dates (`{date}`), email addresses (`{email}`). Values with no
//! telling form (user names, slugs) are learned: once one position under a prefix has seen more
//! distinct literals than [`TemplateLimits::literals_per_position`], that position becomes
//! `{param}` for everything that follows, and the caller re-templates what it already holds.

use rustc_hash::FxHashMap;

/// What a path segment looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Placeholder {
    /// Integers, UUIDs, hex and base64-like ids.
    Id,
    Date,
    Email,
    /// A position learned to carry values.
    Param,
}

impl Placeholder {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Id => "{id}",
            Self::Date => "{date}",
            Self::Email => "{email}",
            Self::Param => "{param}",
        }
    }
}

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Literal(Box<str>),
    Placeholder(Placeholder),
}

/// The placeholder a segment's form calls for, or None for a segment that may be a literal.
pub fn classify(segment: &str) -> Option<Placeholder> {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    if bytes.len() <= 20 && bytes.iter().all(u8::is_ascii_digit) {
        return Some(Placeholder::Id);
    }
    if is_uuid(bytes) || is_hex_id(bytes) || is_opaque_id(bytes) {
        return Some(Placeholder::Id);
    }
    if is_date(bytes) {
        return Some(Placeholder::Date);
    }
    if is_email(segment) {
        return Some(Placeholder::Email);
    }
    None
}

fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// Hex of at least 8 digits with at least one decimal digit, so words spelled in hex letters
/// (`deadbeef`, `facade`) stay literals.
fn is_hex_id(bytes: &[u8]) -> bool {
    bytes.len() >= 8
        && bytes.iter().all(u8::is_ascii_hexdigit)
        && bytes.iter().any(u8::is_ascii_digit)
}

/// Base64 and similar opaque ids: long, with digits and letters that alternate often. camelCase
/// and kebab-case names (`getUserProfile`, `oauth2-callback`) alternate too seldom or have no
/// digit.
fn is_opaque_id(bytes: &[u8]) -> bool {
    #[derive(PartialEq, Clone, Copy)]
    enum Class {
        Lower,
        Upper,
        Digit,
        Symbol,
    }
    if bytes.len() < 16 {
        return false;
    }
    let class = |byte: u8| match byte {
        b'a'..=b'z' => Some(Class::Lower),
        b'A'..=b'Z' => Some(Class::Upper),
        b'0'..=b'9' => Some(Class::Digit),
        b'-' | b'_' | b'+' | b'=' | b'~' => Some(Class::Symbol),
        _ => None,
    };
    // One pass, no allocation: every path segment of every call comes through here.
    let (mut digits, mut letters, mut changes) = (0, 0, 0);
    let mut previous = None;
    for &byte in bytes {
        let Some(current) = class(byte) else {
            return false;
        };
        match current {
            Class::Digit => digits += 1,
            Class::Lower | Class::Upper => letters += 1,
            // Separators do not count: kebab and snake case change class at every one.
            Class::Symbol => continue,
        }
        changes += usize::from(previous.is_some_and(|previous| previous != current));
        previous = Some(current);
    }
    digits > 0 && letters > 0 && changes * 4 >= bytes.len()
}

/// `YYYY-MM-DD`, optionally followed by an ISO 8601 time.
fn is_date(bytes: &[u8]) -> bool {
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    bytes.len() >= 10
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && (bytes.len() == 10 || bytes[10] == b'T' || bytes[10] == b't')
}

fn is_email(segment: &str) -> bool {
    let decoded = segment.replace("%40", "@");
    let Some((local, domain)) = decoded.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

/// Bounds of one service's template tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateLimits {
    /// Distinct literals one position may have before it is learned to carry values.
    pub literals_per_position: usize,
    /// Nodes in the tree; past it, unknown literals are taken as values.
    pub max_nodes: usize,
    /// Segments considered; deeper ones fold into the last.
    pub max_depth: usize,
}

impl Default for TemplateLimits {
    fn default() -> Self {
        Self {
            literals_per_position: 64,
            max_nodes: 8192,
            max_depth: 32,
        }
    }
}

#[derive(Debug, Default)]
struct Node {
    children: FxHashMap<Segment, usize>,
    literal_children: usize,
    /// This position carries values: unknown literals go to the `{param}` child.
    learned_param: bool,
}

/// A position that has just been learned to carry values: the first `prefix.len()` segments
/// of a template equal to `prefix`, followed by a literal, now read `{param}` there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    pub prefix: Vec<Segment>,
}

/// One service's paths as a tree of segments.
#[derive(Debug)]
pub struct TemplateTree {
    nodes: Vec<Node>,
    limits: TemplateLimits,
}

impl TemplateTree {
    pub fn new(limits: TemplateLimits) -> Self {
        Self {
            nodes: vec![Node::default()],
            limits,
        }
    }

    /// The template of `path` (percent-encoded, without query). A position learned to carry
    /// values by this very path is returned in `learned`.
    pub fn template(&mut self, path: &str, learned: &mut Vec<Learned>) -> Vec<Segment> {
        let mut segments = Vec::new();
        let mut node = 0;
        let parts = path.split('/').filter(|part| !part.is_empty());
        for (depth, part) in parts.enumerate() {
            if depth >= self.limits.max_depth {
                segments.push(Segment::Placeholder(Placeholder::Param));
                break;
            }
            let segment = match classify(part) {
                Some(placeholder) => Segment::Placeholder(placeholder),
                None => self.literal_or_param(node, part, &segments, learned),
            };
            node = self.child(node, &segment);
            segments.push(segment);
        }
        segments
    }

    /// The template `path` has in the tree as it stands, learning nothing: for a call that must
    /// not shape the templates (one the server answered 404). A literal the tree does not hold
    /// stays a literal, unless its position is learned to carry values.
    pub fn lookup(&self, path: &str) -> Vec<Segment> {
        let mut segments = Vec::new();
        let mut node = Some(0);
        let parts = path.split('/').filter(|part| !part.is_empty());
        for (depth, part) in parts.enumerate() {
            if depth >= self.limits.max_depth {
                segments.push(Segment::Placeholder(Placeholder::Param));
                break;
            }
            let learned_param = node.is_some_and(|node| self.nodes[node].learned_param);
            let segment = match classify(part) {
                Some(placeholder) => Segment::Placeholder(placeholder),
                None if learned_param => Segment::Placeholder(Placeholder::Param),
                None => Segment::Literal(part.into()),
            };
            node = node.and_then(|node| self.nodes[node].children.get(&segment).copied());
            segments.push(segment);
        }
        segments
    }

    fn literal_or_param(
        &mut self,
        node: usize,
        part: &str,
        prefix: &[Segment],
        learned: &mut Vec<Learned>,
    ) -> Segment {
        let literal = Segment::Literal(part.into());
        let here = &self.nodes[node];
        if here.learned_param {
            return Segment::Placeholder(Placeholder::Param);
        }
        if here.children.contains_key(&literal) {
            return literal;
        }
        if self.nodes.len() >= self.limits.max_nodes {
            return Segment::Placeholder(Placeholder::Param);
        }
        if here.literal_children < self.limits.literals_per_position {
            return literal;
        }
        self.nodes[node].learned_param = true;
        learned.push(Learned {
            prefix: prefix.to_vec(),
        });
        Segment::Placeholder(Placeholder::Param)
    }

    /// The child of `node` for `segment`, made if missing and the tree has room; a full tree
    /// routes everything through the node itself (its templates still come out right, only
    /// learning stops below it).
    fn child(&mut self, node: usize, segment: &Segment) -> usize {
        if let Some(&child) = self.nodes[node].children.get(segment) {
            return child;
        }
        if self.nodes.len() >= self.limits.max_nodes {
            return node;
        }
        let child = self.nodes.len();
        self.nodes.push(Node::default());
        let parent = &mut self.nodes[node];
        parent.children.insert(segment.clone(), child);
        if matches!(segment, Segment::Literal(_)) {
            parent.literal_children += 1;
        }
        child
    }

    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }
}

/// Whether `template` is one that `learned` turns into another, and if so which.
pub fn relearn(template: &[Segment], learned: &Learned) -> Option<Vec<Segment>> {
    let depth = learned.prefix.len();
    if template.len() <= depth || template[..depth] != learned.prefix[..] {
        return None;
    }
    matches!(template[depth], Segment::Literal(_)).then(|| {
        let mut relearned = template.to_vec();
        relearned[depth] = Segment::Placeholder(Placeholder::Param);
        relearned
    })
}

/// `/a/{id}/b`; the root is `/`.
pub fn render(segments: &[Segment]) -> String {
    if segments.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        match segment {
            Segment::Literal(literal) => out.push_str(literal),
            Segment::Placeholder(placeholder) => out.push_str(placeholder.as_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn template(tree: &mut TemplateTree, path: &str) -> String {
        render(&tree.template(path, &mut Vec::new()))
    }

    #[test]
    fn typical_rest_paths_fold_their_values() {
        let mut tree = TemplateTree::new(TemplateLimits::default());
        let cases = [
            ("/users/42/orders/9f1c2b3a4d5e", "/users/{id}/orders/{id}"),
            (
                "/v1/accounts/123e4567-e89b-12d3-a456-426614174000",
                "/v1/accounts/{id}",
            ),
            ("/reports/2024-03-01", "/reports/{date}"),
            (
                "/reports/2024-03-01T10:00:00Z/summary",
                "/reports/{date}/summary",
            ),
            ("/customers/jane.doe%40example.com", "/customers/{email}"),
            ("/files/aGVsbG8gd29ybGQ1MjM0NTY3", "/files/{id}"),
            ("/api/v2/getUserProfile", "/api/v2/getUserProfile"),
            ("/oauth2-callback-handler-x", "/oauth2-callback-handler-x"),
            ("/static/deadbeef", "/static/deadbeef"),
            ("/", "/"),
            ("", "/"),
            ("//double//slashes/", "/double/slashes"),
        ];
        for (path, expected) in cases {
            assert_eq!(template(&mut tree, path), expected, "{path}");
        }
    }

    #[test]
    fn a_position_with_many_literals_is_learned_to_carry_values() {
        let limits = TemplateLimits {
            literals_per_position: 3,
            ..TemplateLimits::default()
        };
        let mut tree = TemplateTree::new(limits);
        for name in ["alice", "bob", "carol"] {
            assert_eq!(
                template(&mut tree, &format!("/users/{name}/profile")),
                format!("/users/{name}/profile")
            );
        }
        let mut learned = Vec::new();
        let dave = tree.template("/users/dave/profile", &mut learned);
        assert_eq!(render(&dave), "/users/{param}/profile");
        assert_eq!(
            learned,
            vec![Learned {
                prefix: vec![Segment::Literal("users".into())]
            }]
        );
        assert_eq!(
            template(&mut tree, "/users/alice/profile"),
            "/users/{param}/profile"
        );
        let old: Vec<Segment> = vec![
            Segment::Literal("users".into()),
            Segment::Literal("bob".into()),
            Segment::Literal("profile".into()),
        ];
        assert_eq!(relearn(&old, &learned[0]), Some(dave));
        assert_eq!(relearn(&old[..1], &learned[0]), None);
    }

    #[test]
    fn the_tree_stays_within_its_node_budget() {
        let limits = TemplateLimits {
            literals_per_position: 1_000,
            max_nodes: 50,
            max_depth: 4,
        };
        let mut tree = TemplateTree::new(limits);
        for index in 0..500 {
            template(&mut tree, &format!("/a{index}/b{index}/c/d/e/f/g"));
        }
        assert!(tree.nodes() <= 50);
        assert_eq!(
            template(&mut tree, "/x/y/z/w/v/u"),
            "/{param}/{param}/{param}/{param}/{param}"
        );
        assert_eq!(template(&mut tree, "/a1/b1/c/d"), "/a1/b1/c/d");
    }

    proptest! {
        #[test]
        fn any_path_gets_a_template_without_panicking(path in "\\PC{0,200}") {
            let mut tree = TemplateTree::new(TemplateLimits::default());
            let rendered = render(&tree.template(&path, &mut Vec::new()));
            prop_assert!(rendered.starts_with('/'));
        }
    }
}
