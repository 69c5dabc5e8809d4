//! Sensitive data in API calls: what a call carries that should not travel, and what its tokens
//! say about themselves.
//!
//! - [`builtin`]: validated detectors (cards, IBANs, national ids, contact data, provider keys,
//!   passwords, JWTs) found in one automaton pass per value;
//! - [`validate`]: the check digits, ranges and prefixes behind them;
//! - [`config`]: custom detectors and declared-masked fields a team configures;
//! - [`masking`]: whether declared-masked fields really are;
//! - [`jwt`]: tokens decoded without trust and checked for hygiene;
//! - [`scan`]: one observed call taken apart into named values, every detector run over each;
//! - [`detection`]: what is reported, with evidence that never carries the value;
//! - [`dataflow`]: which classes of data each endpoint takes in and gives out, to and from whom.
//!
//! Everything here is a pure function of its inputs: the agent supplies the call, the clock
//! (in the call) and the hash key; nothing panics or grows without bound on hostile bytes.

pub mod builtin;
pub mod config;
pub mod dataflow;
pub mod detection;
pub mod jwt;
pub mod masking;
pub mod scan;
pub mod validate;

pub use config::{Config, ConfigError};

/// Every kind the built-in detectors and token checks report; configured detectors add
/// `data.<name>`.
pub const KINDS: [&str; 27] = [
    "data.aws_access_key",
    "data.aws_secret_key",
    "data.date_of_birth",
    "data.email",
    "data.es_dni",
    "data.fr_nir",
    "data.github_token",
    "data.google_api_key",
    "data.iban",
    "data.internal_ip",
    "data.jwt",
    "data.masking_ineffective",
    "data.nl_bsn",
    "data.password",
    "data.payment_card",
    "data.phone",
    "data.private_key",
    "data.secret",
    "data.slack_token",
    "data.stripe_key",
    "data.uk_nino",
    "data.us_ssn",
    "auth.credentials_in_url",
    "auth.jwt_alg_none",
    "auth.jwt_expired_accepted",
    "auth.jwt_pii_claims",
    "auth.token_overbroad",
];
pub use detection::{DataClass, Detection, Direction, Evidence, HashKey, Location};
pub use scan::Scanner;
