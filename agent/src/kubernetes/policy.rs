//! The `MoatPolicy` custom resource (moat.dev/v1alpha1, namespaced): a policy file's content as
//! a Kubernetes object. Its CRD's schema is generated from the policy file's own Rust type, so
//! the two cannot drift.
//!
//! The agent reads MoatPolicies leniently (the spec as plain JSON) and validates each one itself
//! with the policy file's rules: one malformed object is rejected with an error naming its field,
//! and the others keep being enforced, whatever the API server let through.

use std::path::Path;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::{CustomResource, CustomResourceExt as _};
use policy::{Policy, PolicyError, schema::PolicyFile};
use serde::{Deserialize, Serialize};

/// The policy, as the policy file writes it (docs/policy.md).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "moat.dev",
    version = "v1alpha1",
    kind = "MoatPolicy",
    plural = "moatpolicies",
    shortname = "mpol",
    namespaced,
    schema = "disabled",
    doc = "Moat enforcement policy: identities (CIDRs or pod selectors), blocklist, rules, isolation and rate limits, as in a Moat policy file."
)]
pub struct MoatPolicySpec {
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// The CRD, with the policy file's schema as the spec's.
pub fn crd() -> CustomResourceDefinition {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|settings| {
            // Kubernetes refuses `$ref` and `$schema` in a CRD.
            settings.inline_subschemas = true;
            settings.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .with_transform(kube::core::schema::OptionalEnum)
        .into_generator();
    let spec_schema = serde_json::to_value(generator.into_root_schema_for::<PolicyFile>())
        .expect("a JSON schema serializes");
    let mut spec_schema: serde_json::Value = spec_schema;
    if let Some(object) = spec_schema.as_object_mut() {
        object.remove("title");
    }
    let schema: JSONSchemaProps = serde_json::from_value(serde_json::json!({
        "type": "object",
        "description": "Moat enforcement policy (docs/policy.md).",
        "required": ["spec"],
        "properties": { "spec": spec_schema },
    }))
    .expect("the policy schema is a valid OpenAPI v3 schema");
    let mut crd = MoatPolicy::crd();
    for version in &mut crd.spec.versions {
        version.schema = Some(
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceValidation {
                open_api_v3_schema: Some(schema.clone()),
            },
        );
    }
    crd
}

/// The CRD as YAML, for `moat-agent crd` and the Helm chart.
pub fn crd_yaml() -> String {
    serde_yaml::to_string(&crd()).expect("a CRD serializes")
}

impl MoatPolicy {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or(""),
            self.metadata.name.as_deref().unwrap_or("")
        )
    }

    /// Validates the spec as a policy file. Blocklist files are refused: an object cannot name
    /// files on the node. Errors name the object and field (`MoatPolicy shop/db: rules[0].to:
    /// ...`); a line number would point into the agent's own rendering, so there is none.
    pub fn policy(&self) -> Result<Policy, PolicyError> {
        let origin = format!("MoatPolicy {}", self.key());
        let text = serde_yaml::to_string(&self.spec.fields).map_err(|error| PolicyError {
            file: origin.clone().into(),
            line: None,
            column: None,
            field: None,
            message: error.to_string(),
        })?;
        let no_files = |path: &Path| -> std::io::Result<String> {
            Err(std::io::Error::other(format!(
                "{} is a file on the node; a MoatPolicy lists its blocklist in `blocklist.cidrs`",
                path.display()
            )))
        };
        policy::parse(&text, Path::new(&origin), &no_files).map_err(|error| PolicyError {
            line: None,
            column: None,
            ..error
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(spec: serde_json::Value) -> MoatPolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "moat.dev/v1alpha1",
            "kind": "MoatPolicy",
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": spec,
        }))
        .expect("a MoatPolicy object")
    }

    #[test]
    fn a_valid_spec_is_a_policy() {
        let policy = object(serde_json::json!({
            "identities": {
                "web": {"selector": {"namespace": "shop", "matchLabels": {"app": "web"}}},
                "db": {"selector": {"namespace": "shop", "matchLabels": {"app": "db"}}}
            },
            "rules": [{"name": "web-not-to-db", "action": "deny", "from": "web", "to": "db", "ports": [5432], "protocol": "tcp"}]
        }))
        .policy()
        .expect("valid");
        assert_eq!(policy.identities.len(), 2);
        assert!(policy.has_pod_selectors());
    }

    #[test]
    fn a_malformed_spec_is_refused_naming_object_and_field() {
        let error = object(serde_json::json!({"rules": [{"name": "x", "action": "drop", "from": "any", "to": "any"}]}))
            .policy()
            .expect_err("bad action");
        let text = error.to_string();
        assert!(
            text.starts_with("MoatPolicy shop/db: rules[0].action: unknown variant `drop`"),
            "{text}"
        );
        let error = object(serde_json::json!({"blocklist": {"files": ["/etc/passwd"]}}))
            .policy()
            .expect_err("files");
        assert!(
            error
                .to_string()
                .contains("a MoatPolicy lists its blocklist in `blocklist.cidrs`"),
            "{error}"
        );
    }

    #[test]
    fn the_crd_is_namespaced_structural_and_carries_the_policy_schema() {
        let crd = serde_json::to_value(crd()).expect("serializes");
        assert_eq!(crd["metadata"]["name"], "moatpolicies.moat.dev");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["kind"], "MoatPolicy");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        for field in ["identities", "blocklist", "rules", "isolate", "rateLimits"] {
            assert!(
                spec["properties"][field].is_object(),
                "spec.{field} missing from {spec:#}"
            );
        }
        let identity = &spec["properties"]["identities"]["additionalProperties"];
        assert!(
            identity["properties"]["selector"]["properties"]["matchLabels"].is_object(),
            "{identity:#}"
        );
        // Structural: no references, and every node has a type.
        let text = version.to_string();
        assert!(
            !text.contains("$ref") && !text.contains("$schema"),
            "{text}"
        );
        fn typed(node: &serde_json::Value, path: &str) {
            if let Some(object) = node.as_object() {
                if object.contains_key("properties")
                    || object.contains_key("items")
                    || object.contains_key("enum")
                {
                    assert!(object.contains_key("type"), "{path} has no type: {node}");
                }
                for (key, child) in object {
                    typed(child, &format!("{path}.{key}"));
                }
            }
        }
        typed(&version["schema"]["openAPIV3Schema"], "openAPIV3Schema");
    }
}
