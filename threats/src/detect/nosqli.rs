//! NoSQL operator injection: MongoDB-style query operators where the application expected a
//! plain value (a JSON key, `name[$ne]=` in a query, or JSON text inside a parameter).

const OPERATORS: &[&str] = &[
    "ne",
    "eq",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "nin",
    "regex",
    "where",
    "exists",
    "expr",
    "not",
    "nor",
    "or",
    "and",
    "elemmatch",
    "function",
    "accumulator",
    "lookup",
    "jsonschema",
    "type",
    "size",
    "all",
    "mod",
];

/// Whether `value` (a key or a value, lower-cased) carries an operator.
pub fn check(value: &str, is_key: bool) -> Option<&'static str> {
    let bytes = value.as_bytes();
    for (at, _) in value.match_indices('$') {
        let name_len = value[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        let name = &value[at + 1..at + 1 + name_len];
        if !OPERATORS.contains(&name) {
            continue;
        }
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + 1 + name_len).copied();
        let whole_key = is_key && at == 0 && after.is_none();
        let bracketed = before == Some(b'[') && after == Some(b']');
        let json_key = matches!(before, Some(b'"' | b'\''))
            && matches!(after, Some(b'"' | b'\''))
            && value[at + 1 + name_len..]
                .trim_start_matches(['"', '\'', ' '])
                .starts_with(':');
        if whole_key || bracketed || json_key {
            return Some(
                if name == "where" || name == "function" || name == "accumulator" {
                    "nosqli.javascript"
                } else {
                    "nosqli.operator"
                },
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn operators_where_values_belong() {
        assert_eq!(check("$ne", true), Some("nosqli.operator"));
        assert_eq!(check("password[$ne]", true), Some("nosqli.operator"));
        assert_eq!(check("{\"$gt\": \"\"}", false), Some("nosqli.operator"));
        assert_eq!(check("$where", true), Some("nosqli.javascript"));
        assert_eq!(check("costs $in total $10", false), None);
        assert_eq!(check("$ne", false), None);
        assert_eq!(check("$ref", true), None);
    }
}
