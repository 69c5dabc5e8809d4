//! OpenAPI documents inferred from observed calls.
