//! Attacks in requests and leaks in responses, judged call by call.
//!
//! - [`decode`]: the layers (URL, HTML, escapes, base64, SQL comments) peeled before matching;
//! - [`detect`]: the request detectors (`threat.*`) and response detectors (`leak.*`, `headers.*`).
//!
//! Everything here is a pure function of its inputs, bounded per call, and never panics on
//! hostile input.

pub mod behavior;
pub mod decode;
pub mod detect;

pub use detect::{Detector, Threat, ThreatKind};
