//! Three limit bytes, then paths, one a line, through one template tree: every path gets a
//! template within the depth bound, the tree stays within its node bound, and the templates
//! already handed out re-learn as the inventory re-learns them, keeping their length.
#![no_main]

use intelligence::template::{self, Segment, TemplateLimits, TemplateTree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [literals, nodes, depth, paths @ ..] = data else {
        return;
    };
    // Small, zero included, so that inputs reach every bound.
    let limits = TemplateLimits {
        literals_per_position: usize::from(literals % 8),
        max_nodes: usize::from(nodes % 64),
        max_depth: usize::from(depth % 12),
    };
    let mut tree = TemplateTree::new(limits);
    let mut templates: Vec<Vec<Segment>> = Vec::new();
    for path in paths.split(|byte| *byte == b'\n') {
        let path = String::from_utf8_lossy(path);
        let mut learned = Vec::new();
        let segments = tree.template(&path, &mut learned);
        // Segments past the depth bound fold into one more.
        assert!(
            segments.len() <= limits.max_depth + 1,
            "{path:?}: {segments:?}"
        );
        assert!(
            tree.nodes() <= limits.max_nodes.max(1),
            "{} nodes",
            tree.nodes()
        );
        let rendered = template::render(&segments);
        assert!(rendered.starts_with('/'), "{path:?} -> {rendered:?}");
        for learned in &learned {
            for old in &mut templates {
                if let Some(relearned) = template::relearn(old, learned) {
                    assert_eq!(relearned.len(), old.len());
                    let _ = template::render(&relearned);
                    *old = relearned;
                }
            }
        }
        templates.push(segments);
    }
});
