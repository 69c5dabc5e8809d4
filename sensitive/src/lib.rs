//! Sensitive data in API calls.
pub mod builtin;
pub mod detection;
pub mod jwt;
pub mod validate;
