//! Cross-site scripting: markup that runs script (script tags, event handlers, active
//! elements), script URLs, and breakouts from a JavaScript string into a call.

use regex::{Regex, RegexSet, RegexSetBuilder};

pub struct Xss {
    /// Every rule's pattern at once: one pass tells whether any matches, as most values
    /// (benign ones) do not. Its automaton gets room for the many states attacks visit, lest
    /// it be rebuilt over and over.
    any: RegexSet,
    /// The rules one by one, for which matches first.
    rules: Vec<(&'static str, Regex)>,
}

impl Xss {
    pub fn new() -> Self {
        // Word boundaries are ASCII ones (`(?-u:\b)`): a Unicode `\b` keeps regex from using its
        // fast engines on any value holding a non-ASCII character.
        let rules = [
            // With or without a namespace prefix (`<x:script xmlns:x=...>` in XHTML).
            (
                "xss.script_tag",
                r"<\s*/?\s*(?:[a-z0-9_-]+:)?script(?-u:\b)",
            ),
            // Any tag with an on* handler attribute: `<img src=x onerror=...>`, `<svg/onload=...>`.
            (
                "xss.event_handler",
                r#"<[a-z][a-z0-9:-]*(?-u:\b)[^>]*?[\s/'"]on[a-z]{3,}\s*="#,
            ),
            // A quote closing an attribute, then a handler: `" onmouseover="...`.
            (
                "xss.attribute_breakout",
                r#"["'`][^"'<>]{0,40}?[\s/]on[a-z]{3,}\s*="#,
            ),
            // A quote closing an attribute right before a handler or a script-loading attribute
            // with nothing or code after it: `"onfocus=`, `'formaction=`, `"onload=alert(1)`.
            (
                "xss.attribute_breakout",
                r#"["'`](?:on[a-z]{3,}|formaction|srcdoc)\s*=\s*(?:$|["'`(]|[a-z_$][\w$.]*\s*\()"#,
            ),
            // A handler assigned a call or a sink outside any tag: `;onfocus=eval(atob(...))`,
            // `onerror=alert;throw 1`.
            (
                "xss.event_handler",
                r#"(?:^|[\s;/"'])on[a-z]{3,}\s*=\s*(?:[a-z_$][\w$.]*\s*\(|(?:alert|prompt|confirm|eval)(?-u:\b))"#,
            ),
            (
                "xss.active_element",
                r"<\s*\??(?:[a-z0-9_-]+:)?(?:iframe|frame|frameset|object|embed|applet|meta|base|isindex|vmlframe|style|link|import)(?-u:\b)[^a-z]",
            ),
            ("xss.style_import", r"<\s*style(?-u:\b)[^>]*>[^<]*@import"),
            (
                "xss.script_url",
                r"(?:javascript|vbscript|livescript)\s*:[^\s]",
            ),
            (
                "xss.data_url",
                r"data\s*:\s*(?:text/html|image/svg\+xml|application/x?html)",
            ),
            (
                "xss.css_expression",
                r"(?:expression\s*\(|-moz-binding|behavior\s*:\s*url)",
            ),
            (
                "xss.script_call",
                r#"(?:["'`;>)]|^)\s*(?:[;+,)\-*/|&^%]\s*)?(?:alert|prompt|confirm|eval|settimeout|setinterval)\s*[(`]"#,
            ),
            // Template literals called as tags: ``[].sort.call`${alert}1` ``.
            (
                "xss.script_call",
                r"\.\s*(?:call|apply|bind)\s*`|\$\{\s*(?:alert|prompt|confirm|eval)(?-u:\b)|(?-u:\b)new\s+function\(",
            ),
            (
                "xss.dom_sink",
                r"document\s*\.\s*(?:cookie|domain|write)|\.innerhtml\s*=|window\s*\.\s*location\s*=",
            ),
            // Properties reached by name, the way filter evasions spell them:
            // `(document)["cookie"]`, `self["alert"]`.
            (
                "xss.dom_sink",
                r#"(?-u:\b)(?:document|self|window|top|parent|frames|globalthis)(?:/\*[^*]*\*/)?\)?\[\s*["'`]"#,
            ),
        ];
        Self {
            any: RegexSetBuilder::new(rules.iter().map(|(_, pattern)| *pattern))
                .dfa_size_limit(16 << 20)
                .build()
                .expect("xss patterns compile"),
            rules: rules
                .into_iter()
                .map(|(rule, pattern)| (rule, Regex::new(pattern).expect("xss patterns compile")))
                .collect(),
        }
    }

    pub fn check(&self, value: &str) -> Option<&'static str> {
        // Browsers drop tabs, newlines and NULs inside URLs and attribute names.
        let mut folded: String = value
            .chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r' | '\0'))
            .collect();
        if let Some(rule) = self.rule(&folded) {
            return Some(rule);
        }
        // CSS drops comments inside a word: `expr/**/ession(`.
        if folded.contains("/*") {
            folded = without_comments(&folded);
            if let Some(rule) = self.rule(&folded) {
                return Some(rule);
            }
        }
        // A script scheme split by characters browsers drop was split to pass a filter.
        if ["javascript:", "vbscript:"]
            .iter()
            .any(|scheme| folded.contains(scheme) && !value.contains(scheme))
        {
            return Some("xss.script_url");
        }
        // JSFuck: `![]` negates an empty array only in code written without letters (a
        // Markdown image with no alt text, `![](x.png)`, is not).
        value
            .match_indices("![]")
            .any(|(at, _)| !value[at + 3..].starts_with('('))
            .then_some("xss.jsfuck")
    }

    fn rule(&self, text: &str) -> Option<&'static str> {
        if !self.any.is_match(text) {
            return None;
        }
        self.rules
            .iter()
            .find(|(_, regex)| regex.is_match(text))
            .map(|(rule, _)| *rule)
    }
}

/// `text` without its `/* ... */` comments (an unclosed one runs to the end).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("/*") {
        out.push_str(&rest[..open]);
        rest = rest[open + 2..]
            .find("*/")
            .map_or("", |close| &rest[open + 2 + close + 2..]);
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::Xss;

    #[test]
    fn payloads_are_found_and_markup_talk_is_not() {
        let xss = Xss::new();
        for value in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<svg/onload=alert(1)>",
            "\" onmouseover=\"alert(1)",
            "<a href=\"java\tscript:alert(1)\">x</a>",
            "<iframe src=//evil.example>",
            "';alert(document.cookie);//",
            "data:text/html;base64,pgi+",
            "<x:script xmlns:x=\"http://www.w3.org/1999/xhtml\" src=\"data:,alert(1)\" />",
            "q=test;onfocus=eval(atob('ywxlcnqomsk='))",
            "<style>@import'http://evil.example/x.css';</style>",
            "ja\tvascript:",
            "(![] [])[ ! []]",
            "(document/*foo*/)[\"cookie\"]",
            "self[\"\\x24\"]",
            "[].sort.call`${alert}1337`",
            "new function()",
            "<v:vmlframe src=\"foo.example/sup.fml\"/>",
            "<link / asdf href  /= ",
            "<?import implementation =",
            "<style>@\\\\",
            "'-alert(1)-'",
            "onerror=alert;throw 1",
            "\"onzoom=",
            "'formaction=",
            "<img style=\"xss:expr/*xss*/ession(alert(1))\">",
        ] {
            assert!(xss.check(value).is_some(), "missed {value:?}");
        }
        for value in [
            "javascript: the good parts is a classic",
            "use <b>bold</b> and <img src=\"cat.png\"> in posts",
            "the alert was raised (by the monitor)",
            "turn on = off switch",
            "o'brien said \"see you on monday\"",
            "call me on=monday (please)",
            "![](diagram.png) shows the flow",
            "the window [\"left\"] pane",
            "we need a new function (maybe two)",
            "time: 10:00, place: hall",
            "the <links> section and <stylesheet> notes",
            "well-known - alerting (paging) is on",
            "online=alerted users",
            "status \"online=yes\" for now",
        ] {
            assert_eq!(xss.check(value), None, "flagged {value:?}");
        }
    }
}
