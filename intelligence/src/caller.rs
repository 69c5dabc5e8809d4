//! Who is calling, beyond an address: the workload or range the agent resolved, the client
//! application, the customer or tenant, and the end user. The agent fills the levels it can
//! tell and chooses how each is shown (a keyed hash unless the operator allows clear text).

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Caller {
    /// The workload (`namespace/name`), service, node, customer range, range or address.
    pub peer: String,
    /// The client software (User-Agent family) or the application a configured API key names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// The fingerprint of the API key presented (a keyed hash, never the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The customer or tenant: a customer range, a configured API key's customer, or a token
    /// claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The end user a token or Basic credentials name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl Caller {
    /// A caller known only by its network identity.
    pub fn peer(peer: impl Into<String>) -> Self {
        Self {
            peer: peer.into(),
            ..Self::default()
        }
    }
}

impl fmt::Display for Caller {
    /// `shop/web (application curl, customer Acme Corp, user #1f2e...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.peer)?;
        let levels = [
            ("application", &self.application),
            ("api key", &self.api_key),
            ("customer", &self.customer),
            ("user", &self.user),
        ];
        let mut first = true;
        for (name, value) in levels {
            if let Some(value) = value {
                f.write_str(if first { " (" } else { ", " })?;
                write!(f, "{name} {value}")?;
                first = false;
            }
        }
        if !first {
            f.write_str(")")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_levels_it_knows() {
        assert_eq!(Caller::peer("shop/web").to_string(), "shop/web");
        let full = Caller {
            application: Some("curl".into()),
            customer: Some("Acme Corp".into()),
            user: Some("#0a1b".into()),
            ..Caller::peer("range/partners")
        };
        assert_eq!(
            full.to_string(),
            "range/partners (application curl, customer Acme Corp, user #0a1b)"
        );
    }
}
