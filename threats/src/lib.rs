//! Attacks in requests and leaks in responses, judged call by call.
//!
//! - [`decode`]: the layers (URL, HTML, escapes, base64, SQL comments) peeled before matching.
//!
//! Everything here is a pure function of its inputs, bounded per call, and never panics on
//! hostile input.

pub mod decode;
