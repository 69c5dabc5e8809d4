//! The YAML examples in docs/ are files the agent reads (policy, inventory, detection file,
//! Service annotations): each is parsed here with the parser the agent uses, so an example an
//! operator copies works. A new YAML example must be added to `EXAMPLES`, or this test fails.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize as _;

/// What a YAML example in docs/ is, and so which parser checks it.
#[derive(Debug, Clone, Copy)]
enum Example {
    /// A policy file (`--policy`).
    Policy,
    /// A MoatPolicy object: its `spec` is a policy file.
    MoatPolicy,
    /// An inventory file (`--inventory`), or its `apis:` section alone.
    Inventory,
    /// A detection file (`--detection`), or some of its sections.
    Detection,
    /// The `sensitive:` section of a detection file, without its key.
    SensitiveSection,
    /// Kubernetes objects: each Service's `moat.dev/openapi*` annotations must bind a spec
    /// without a problem (the ConfigMaps beside them hold abridged specs, left unchecked).
    AnnotatedServices,
}

/// Every YAML example in docs/, in order of appearance per file.
const EXAMPLES: &[(&str, &[Example])] = &[
    (
        "docs/api-intelligence.md",
        &[Example::Inventory, Example::AnnotatedServices],
    ),
    ("docs/detection.md", &[Example::Detection]),
    ("docs/identity.md", &[Example::Inventory]),
    (
        "docs/policy.md",
        &[Example::Policy, Example::Policy, Example::MoatPolicy],
    ),
    ("docs/sensitive-data.md", &[Example::SensitiveSection]),
    ("docs/threats.md", &[Example::Detection]),
];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("agent/ sits in the repository")
        .to_path_buf()
}

/// The ```yaml blocks of a Markdown text.
fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match current.as_mut() {
            None if line.trim_start() == "```yaml" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_start() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

fn check(example: Example, text: &str, origin: &Path) -> Result<(), String> {
    // Files an example names (a blocklist) are not part of it: taken as empty, so that the
    // example's own fields are what is checked.
    let no_files = |_: &Path| -> std::io::Result<String> { Ok(String::new()) };
    match example {
        Example::Policy => policy::parse(text, origin, &no_files)
            .map(drop)
            .map_err(|error| error.to_string()),
        Example::MoatPolicy => {
            let object: serde_yaml::Value =
                serde_yaml::from_str(text).map_err(|error| error.to_string())?;
            let spec = serde_yaml::to_string(&object["spec"]).map_err(|error| error.to_string())?;
            policy::parse(&spec, origin, &no_files)
                .map(drop)
                .map_err(|error| error.to_string())
        }
        Example::Inventory => identity::inventory::parse(text, origin)
            .map(drop)
            .map_err(|error| error.to_string()),
        Example::Detection => crate::detection::load_with(origin, &|_| Ok(text.to_owned()))
            .map(drop)
            .map_err(|error| error.to_string()),
        Example::SensitiveSection => {
            let indented: String = text.lines().map(|line| format!("  {line}\n")).collect();
            check(
                Example::Detection,
                &format!("sensitive:\n{indented}"),
                origin,
            )
        }
        Example::AnnotatedServices => {
            let mut services = 0;
            for document in serde_yaml::Deserializer::from_str(text) {
                let object =
                    serde_yaml::Value::deserialize(document).map_err(|error| error.to_string())?;
                if object["kind"] != "Service" {
                    continue;
                }
                services += 1;
                let annotations: BTreeMap<String, String> =
                    serde_yaml::from_value(object["metadata"]["annotations"].clone())
                        .map_err(|error| error.to_string())?;
                let text_of = |field: &str| object["metadata"][field].as_str().unwrap_or("");
                let api =
                    identity::apis::annotated(text_of("namespace"), text_of("name"), &annotations)
                        .ok_or("the Service has no moat.dev/openapi annotation")?;
                if api.binding.is_none() || !api.problems.is_empty() {
                    return Err(format!(
                        "the annotations bind nothing or have problems: {api:?}"
                    ));
                }
            }
            if services == 0 {
                return Err("no Service in the example".to_owned());
            }
            Ok(())
        }
    }
}

#[test]
fn every_yaml_example_in_the_docs_is_valid_for_the_agent() {
    let docs = repository().join("docs");
    let mut listed: Vec<PathBuf> = EXAMPLES
        .iter()
        .map(|(file, _)| repository().join(file))
        .collect();
    listed.sort();
    let mut with_yaml: Vec<PathBuf> = std::fs::read_dir(&docs)
        .expect("docs/ is readable")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| {
            path.extension().is_some_and(|extension| extension == "md")
                && !yaml_blocks(&std::fs::read_to_string(path).unwrap_or_default()).is_empty()
        })
        .collect();
    with_yaml.sort();
    assert_eq!(
        with_yaml, listed,
        "the docs with YAML examples are not the ones EXAMPLES lists (agent/src/docs_examples.rs)"
    );
    for (file, examples) in EXAMPLES {
        let path = repository().join(file);
        let blocks = yaml_blocks(&std::fs::read_to_string(&path).expect("the doc is readable"));
        assert_eq!(
            blocks.len(),
            examples.len(),
            "{file} has {} YAML examples, EXAMPLES lists {}: list each one with what it is",
            blocks.len(),
            examples.len()
        );
        for (index, (block, example)) in blocks.iter().zip(*examples).enumerate() {
            if let Err(error) = check(*example, block, &path) {
                panic!(
                    "{file}, YAML example {}: not a valid {example:?}: {error}",
                    index + 1
                );
            }
        }
    }
}

#[test]
fn a_broken_example_is_refused() {
    let origin = Path::new("docs/example.md");
    assert!(
        check(
            Example::Policy,
            "rules: [{name: x, action: maybe}]\n",
            origin
        )
        .is_err()
    );
    assert!(
        check(
            Example::Detection,
            "modes: {threat.sqli: sometimes}\n",
            origin
        )
        .is_err()
    );
    assert!(
        check(
            Example::Inventory,
            "ranges: [{name: x, kind: moon}]\n",
            origin
        )
        .is_err()
    );
    assert!(
        check(
            Example::AnnotatedServices,
            "kind: Service\nmetadata: {name: a, namespace: b, annotations: {moat.dev/openapi: x/y, moat.dev/openapi-mode: blok}}\n",
            origin
        )
        .is_err()
    );
}
