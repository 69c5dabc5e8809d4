//! Specs bound by Services' `moat.dev/openapi` annotations: which Services bind which
//! ConfigMap keys (from the Services watch the identity index already has), and the text of the
//! ConfigMaps they name.

use std::{collections::BTreeMap, sync::Arc};

use identity::{
    apis::{AnnotatedApi, ApiBinding},
    kubernetes::{ObjectError, ServiceFacts},
};
use k8s_openapi::api::core::v1::ConfigMap;

use super::Change;

/// What the API server lets a ConfigMap hold. The agent holds no more of one: past it, keys are
/// refused (in key order) instead of kept.
pub const MAX_CONFIG_MAP_BYTES: usize = 1 << 20;

/// Services whose annotations bind a spec, at most: each holds a compiled spec. Past it, a
/// Service is refused, reported like any refused object.
pub const MAX_ANNOTATED_SERVICES: usize = 256;

/// A ConfigMap's keys as documents: the spec and the files its `$ref`s name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapDocuments {
    pub documents: BTreeMap<String, Document>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    Text(String),
    /// Not kept: the ConfigMap was larger than [`MAX_CONFIG_MAP_BYTES`] by this key.
    TooLarge {
        bytes: usize,
    },
}

/// The text keys of a ConfigMap (`binaryData` is not a spec), within [`MAX_CONFIG_MAP_BYTES`].
/// Never fails: any ConfigMap reads as documents, and a key that is no spec fails only when a
/// spec is loaded from it. Fallible because watches take fallible conversions.
pub fn config_map_documents(config_map: &ConfigMap) -> Result<ConfigMapDocuments, ObjectError> {
    let mut held = 0;
    let documents = config_map
        .data
        .iter()
        .flatten()
        .map(|(key, text)| {
            held += text.len();
            let document = if held > MAX_CONFIG_MAP_BYTES {
                Document::TooLarge { bytes: text.len() }
            } else {
                Document::Text(text.clone())
            };
            (key.clone(), document)
        })
        .collect();
    Ok(ConfigMapDocuments { documents })
}

type ServiceKey = (Arc<str>, Arc<str>);

/// The APIs Services' annotations bind, by Service.
#[derive(Debug, Default)]
pub struct AnnotatedApis {
    services: BTreeMap<ServiceKey, Arc<AnnotatedApi>>,
}

/// What an update of Services changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Noticed {
    /// The bindings changed: the analysis needs them again.
    pub changed: bool,
    /// Annotations found wrong since the last update (a wrong annotation is reported once, not
    /// at every relist), and Services past the bound; each `Service ns/name: problem`.
    pub refused: Vec<String>,
}

fn refusal(key: &ServiceKey, problem: String) -> String {
    ObjectError {
        kind: "Service",
        name: format!("{}/{}", key.0, key.1),
        problem,
    }
    .to_string()
}

impl AnnotatedApis {
    /// Follows a change to the Services watch.
    pub fn update(&mut self, change: &Change<ServiceFacts>) -> Noticed {
        let mut noticed = Noticed::default();
        match change {
            Change::Apply(service) => {
                let key = (service.namespace.clone(), service.name.clone());
                let previous = self.services.remove(&key);
                match &service.api {
                    Some(api) => self.admit(key, api, previous.as_deref(), &mut noticed),
                    None => noticed.changed = previous.is_some(),
                }
            }
            Change::Delete(name) => {
                let (namespace, name) = name.split_once('/').unwrap_or(("", name));
                noticed.changed = self
                    .services
                    .remove(&(Arc::from(namespace), Arc::from(name)))
                    .is_some();
            }
            Change::Replace(services) => {
                let mut previous = std::mem::take(&mut self.services);
                for service in services {
                    if let Some(api) = &service.api {
                        let key = (service.namespace.clone(), service.name.clone());
                        let before = previous.remove(&key);
                        self.admit(key, api, before.as_deref(), &mut noticed);
                    }
                }
                // Whatever is left of before was not listed again: gone.
                noticed.changed |= !previous.is_empty();
            }
        }
        noticed
    }

    /// Adds one Service's API unless the bound is reached, noting what is new about it.
    fn admit(
        &mut self,
        key: ServiceKey,
        api: &Arc<AnnotatedApi>,
        previous: Option<&AnnotatedApi>,
        noticed: &mut Noticed,
    ) {
        if self.services.len() >= MAX_ANNOTATED_SERVICES {
            noticed.refused.push(refusal(
                &key,
                format!(
                    "more than {MAX_ANNOTATED_SERVICES} Services bind specs by annotation; this \
                     one is not bound"
                ),
            ));
            noticed.changed |= previous.is_some();
            return;
        }
        if previous.is_none_or(|previous| previous.problems != api.problems) {
            noticed.refused.extend(
                api.problems
                    .iter()
                    .map(|problem| refusal(&key, problem.clone())),
            );
        }
        noticed.changed |= previous != Some(&**api);
        self.services.insert(key, api.clone());
    }

    /// The bindings, by Service name.
    pub fn bindings(&self) -> impl Iterator<Item = &ApiBinding> {
        self.services
            .values()
            .filter_map(|api| api.binding.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use identity::kubernetes::service_facts;
    use k8s_openapi::api::core::v1::Service;

    use super::*;

    fn service(name: &str, annotations: &[(&str, &str)]) -> ServiceFacts {
        let annotations: BTreeMap<String, String> = annotations
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        let mut object = Service::default();
        object.metadata.namespace = Some("shop".to_owned());
        object.metadata.name = Some(name.to_owned());
        object.metadata.annotations = Some(annotations);
        service_facts(&object).expect("a valid service")
    }

    fn names(apis: &AnnotatedApis) -> Vec<String> {
        apis.bindings().map(|api| api.name.to_string()).collect()
    }

    #[test]
    fn annotations_bind_follow_edits_and_wrong_ones_are_refused_once() {
        let mut apis = AnnotatedApis::default();
        let pets = service("pets", &[("moat.dev/openapi", "specs/openapi.yaml")]);
        let noticed = apis.update(&Change::Apply(pets.clone()));
        assert_eq!(
            noticed,
            Noticed {
                changed: true,
                refused: Vec::new()
            }
        );
        assert_eq!(names(&apis), ["shop/pets"]);
        assert_eq!(
            apis.update(&Change::Apply(pets.clone())),
            Noticed::default()
        );
        let plain = service("db", &[]);
        assert_eq!(
            apis.update(&Change::Replace(vec![pets.clone(), plain.clone()])),
            Noticed::default(),
            "a relist of the same annotations changes nothing"
        );

        let typo = service(
            "pets",
            &[
                ("moat.dev/openapi", "specs/openapi.yaml"),
                ("moat.dev/openapi-mode", "blok"),
            ],
        );
        let noticed = apis.update(&Change::Apply(typo.clone()));
        assert!(noticed.changed);
        assert_eq!(noticed.refused.len(), 1, "{noticed:?}");
        assert!(
            noticed.refused[0].starts_with("Service shop/pets: moat.dev/openapi-mode:"),
            "{}",
            noticed.refused[0]
        );
        assert_eq!(
            apis.bindings().next().map(|api| api.mode),
            Some(intelligence::finding::Mode::Detect)
        );
        assert_eq!(
            apis.update(&Change::Replace(vec![typo, plain.clone()])),
            Noticed::default(),
            "reported once, not at every relist"
        );

        let unusable = service("pets", &[("moat.dev/openapi", "openapi.yaml")]);
        let noticed = apis.update(&Change::Apply(unusable));
        assert!(noticed.changed);
        assert_eq!(noticed.refused.len(), 1);
        assert!(names(&apis).is_empty());

        apis.update(&Change::Apply(pets));
        assert!(apis.update(&Change::Delete("shop/pets".to_owned())).changed);
        assert!(names(&apis).is_empty());
        assert!(!apis.update(&Change::Delete("shop/db".to_owned())).changed);
        assert!(!apis.update(&Change::Replace(vec![plain])).changed);
    }

    #[test]
    fn services_past_the_bound_are_refused() {
        let mut apis = AnnotatedApis::default();
        let services: Vec<ServiceFacts> = (0..=MAX_ANNOTATED_SERVICES)
            .map(|index| {
                service(
                    &format!("svc-{index:04}"),
                    &[("moat.dev/openapi", "specs/openapi.yaml")],
                )
            })
            .collect();
        let noticed = apis.update(&Change::Replace(services));
        assert!(noticed.changed);
        assert_eq!(apis.bindings().count(), MAX_ANNOTATED_SERVICES);
        assert_eq!(noticed.refused.len(), 1, "{noticed:?}");
        assert!(
            noticed.refused[0].starts_with(&format!(
                "Service shop/svc-{MAX_ANNOTATED_SERVICES:04}: more than"
            )),
            "{}",
            noticed.refused[0]
        );
    }

    #[test]
    fn a_config_map_is_held_up_to_its_bound() {
        let big = "x".repeat(MAX_CONFIG_MAP_BYTES - 10);
        let object = ConfigMap {
            data: Some(BTreeMap::from([
                ("a.yaml".to_owned(), big.clone()),
                ("b.yaml".to_owned(), "0123456789".to_owned()),
                ("c.yaml".to_owned(), "more".to_owned()),
            ])),
            ..ConfigMap::default()
        };
        let documents = config_map_documents(&object).expect("documents");
        assert_eq!(documents.documents["a.yaml"], Document::Text(big));
        assert_eq!(
            documents.documents["b.yaml"],
            Document::Text("0123456789".to_owned())
        );
        assert_eq!(
            documents.documents["c.yaml"],
            Document::TooLarge { bytes: 4 }
        );
    }
}
