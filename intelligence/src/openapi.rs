//! OpenAPI 3.0 and 3.1: documents loaded with their `$ref`s ([`document`]), schemas compiled
//! into a validator ([`schema`]), the operations a spec defines ([`spec`]), and each call
//! checked against them ([`conformance`]).

pub mod conformance;
pub mod document;
pub mod schema;
pub mod spec;

pub use conformance::{Conformance, Violation, check};
pub use document::{Documents, Source, SpecError};
pub use spec::Spec;
