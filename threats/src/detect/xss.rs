//! Cross-site scripting: markup that runs script (script tags, event handlers, active
//! elements), script URLs, and breakouts from a JavaScript string into a call.

use regex::Regex;

pub struct Xss {
    rules: Vec<(&'static str, Regex)>,
}

impl Xss {
    pub fn new() -> Self {
        let rules = [
            ("xss.script_tag", r"<\s*/?\s*script\b"),
            // Any tag with an on* handler attribute: `<img src=x onerror=...>`, `<svg/onload=...>`.
            (
                "xss.event_handler",
                r#"<[a-z][a-z0-9:-]*\b[^>]*?[\s/'"]on[a-z]{3,}\s*="#,
            ),
            // A quote closing an attribute, then a handler: `" onmouseover="...`.
            (
                "xss.attribute_breakout",
                r#"["'`][^"'<>]{0,40}?[\s/]on[a-z]{3,}\s*="#,
            ),
            (
                "xss.active_element",
                r"<\s*(?:iframe|frame|frameset|object|embed|applet|meta|base|isindex)\b[^a-z]",
            ),
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
                r#"(?:["'`;>)]|^)\s*(?:[;+,)]\s*)?(?:alert|prompt|confirm|eval|settimeout|setinterval)\s*[(`]"#,
            ),
            (
                "xss.dom_sink",
                r"document\s*\.\s*(?:cookie|domain|write)|\.innerhtml\s*=|window\s*\.\s*location\s*=",
            ),
        ];
        Self {
            rules: rules
                .into_iter()
                .map(|(rule, pattern)| (rule, Regex::new(pattern).expect("xss patterns compile")))
                .collect(),
        }
    }

    pub fn check(&self, value: &str) -> Option<&'static str> {
        // Browsers drop tabs, newlines and NULs inside URLs and attribute names.
        let folded: String = value
            .chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r' | '\0'))
            .collect();
        self.rules
            .iter()
            .find(|(_, regex)| regex.is_match(&folded))
            .map(|(rule, _)| *rule)
    }
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
        ] {
            assert!(xss.check(value).is_some(), "missed {value:?}");
        }
        for value in [
            "javascript: the good parts is a classic",
            "use <b>bold</b> and <img src=\"cat.png\"> in posts",
            "the alert was raised (by the monitor)",
            "turn on = off switch",
            "o'brien said \"see you on monday\"",
        ] {
            assert_eq!(xss.check(value), None, "flagged {value:?}");
        }
    }
}
