//! What responses give away: stack traces per language, framework debug and database error
//! pages, and addresses of the internal network.

use std::net::Ipv4Addr;

use aho_corasick::AhoCorasick;
use regex::{Regex, RegexSet, RegexSetBuilder};

use crate::detect::ssrf;

/// (rule, pattern), grouped by kind; each pattern is specific to one runtime's output format.
/// Word boundaries are ASCII ones (`(?-u:\b)`): a Unicode `\b` makes the regex crate search any
/// body holding a non-ASCII character with its slowest engine.
const TRACES: &[(&str, &str)] = &[
    (
        "trace.java",
        r"(?m)^\s*at [\w$]+(?:\.[\w$<>]+)+\((?:[\w$]+\.java:\d+|Native Method|Unknown Source)\)",
    ),
    (
        "trace.java",
        r"(?-u:\b)(?:java|javax|jakarta|org\.springframework|org\.hibernate|org\.apache|com\.fasterxml)\.[\w.$]*(?:Exception|Error)(?-u:\b)(?::|\s+at(?-u:\b)|\r?\n|$)",
    ),
    ("trace.java", r#"Exception in thread "[^"]*" [\w.$]+"#),
    ("trace.python", r"Traceback \(most recent call last\):"),
    ("trace.python", r#"File "[^"]+\.py", line \d+, in "#),
    ("trace.go", r"goroutine \d+ \[[a-z ]+\]:"),
    ("trace.go", r"(?m)^panic: .+\n"),
    ("trace.go", r"\.go:\d+ \+0x[0-9a-f]+"),
    (
        "trace.node",
        r"(?m)^\s*at (?:[\w$.<>\[\] ]+ \()?(?:/|[A-Za-z]:\\|node:|file://)[^()\n]*\.(?:m?js|ts|cjs):\d+:\d+\)?$",
    ),
    (
        "trace.dotnet",
        r"(?m)^\s*at [\w.`<>\[\],]+\([^)]*\)(?: in [^\n]+:line \d+)?\s*$",
    ),
    (
        "trace.dotnet",
        r"(?-u:\b)System\.(?:[\w.]+\.)?\w*Exception(?-u:\b)(?::|\s+at(?-u:\b)| was unhandled)",
    ),
    (
        "trace.php",
        r"(?:Fatal error|Parse error|Warning|Notice|Deprecated)</b>?:\s.*? in <b>?[^<\n]+\.php</b>? on line <b>?\d+",
    ),
    (
        "trace.php",
        r"(?:PHP )?(?:Fatal error|Parse error|Warning|Notice): .*? in [^\s]+\.php(?::| on line )\d+",
    ),
    ("trace.php", r"(?m)^#\d+ [^\n]+\.php\(\d+\): "),
    ("trace.ruby", r"\.rb:\d+:in [`'][^'`]+'"),
    (
        "trace.ruby",
        r"(?-u:\b)(?:ActionController|ActiveRecord|ActionView|ActiveSupport)::[A-Z]\w+",
    ),
    (
        "trace.ruby",
        r"(?-u:\b)(?:NoMethodError|NameError|ArgumentError|LoadError|SyntaxError)(?:: | \()(?:undefined|uninitialized|wrong number|cannot load)",
    ),
    ("trace.ruby", r"\.rb:\d+: syntax error"),
];
const DEBUG_PAGES: &[(&str, &str)] = &[
    (
        "debug.django",
        r"You're seeing this error because you have <code>DEBUG = True</code>|DEBUG = True</code> in your Django settings",
    ),
    (
        "debug.werkzeug",
        r"Werkzeug Debugger|__debugger__=yes|The debugger caught an exception in your WSGI application",
    ),
    (
        "debug.rails",
        r"Action Controller: Exception caught|<title>Action Controller: Exception",
    ),
    (
        "debug.laravel",
        r"Whoops! There was an error\.|<title>Whoops!|Illuminate\\[A-Za-z\\]+Exception|ignition-|Facade\\Ignition",
    ),
    (
        "debug.symfony",
        r"sf-toolbar|Symfony\\Component\\[A-Za-z\\]+Exception|<title>Symfony Exception",
    ),
    ("debug.spring", r"Whitelabel Error Page"),
    // Server-side source sent as it is: the interpreter did not run it.
    ("debug.php_source", r"<\?(?:php(?-u:\b)|=|\s)"),
    (
        "debug.aspnet",
        r"Server Error in '[^']*' Application|<b> ?Exception Details: ?</b>|\[HttpException \(0x[0-9a-fA-F]+\)\]|ASP\.NET is configured to show verbose error messages",
    ),
    (
        "debug.iis",
        r"<title>IIS [\d.]+ Detailed Error|<title>\d{3}\.\d+ - |Internet Information Services|HTTP Error \d{3}\.\d+ - |Microsoft OLE DB Provider|ODBC Drivers error",
    ),
    (
        "debug.phpinfo",
        r"<title>phpinfo\(\)</title>|PHP Version \d+\.\d+\.\d+</h1>|PHP Credits</h1>",
    ),
    (
        "debug.tomcat",
        r"Apache Tomcat/[\d.]+ - Error report|<h3>Apache Tomcat/",
    ),
    (
        "debug.express",
        r"<pre>(?:TypeError|ReferenceError|SyntaxError|Error): [^<]+<br> &nbsp; &nbsp;at ",
    ),
    (
        "debug.sql_error",
        r"(?i)you have an error in your sql syntax|warning: (?:mysql|mysqli|pg|sqlite|oci|mssql|odbc|maxdb|sybase|ingres|ifx|fbsql|db2)_\w+\(|warning: \w+::query\(\)|(?-u:\b)ERROR \d{4} \([0-9A-Z]{5}\): |\]\[[\w .]*ODBC[\w .]*\]|unclosed quotation mark after the character string|quoted string not properly terminated|(?-u:\b)ORA-\d{5}(?-u:\b)|PostgreSQL query failed|(?-u:\b)PSQLException(?-u:\b)|SQLSTATE\[\w+\]|SQLite(?:3)?::(?:SQLException|query)|sqlite3\.OperationalError|Microsoft SQL Server.*Driver|\[Microsoft\]\[ODBC|Syntax error in string in query expression|Dynamic SQL Error|DB2 SQL error|Sybase message|com\.mysql\.jdbc|org\.postgresql\.util|valid MySQL result|MySqlClient\.|System\.Data\.SqlClient|Npgsql\.|java\.sql\.SQLException|supplied argument is not a valid (?:MySQL|PostgreSQL)|Column count doesn't match value count|pg_query\(\)|mysql_fetch_\w+\(\)|Unknown column '[^']+' in 'field list'|near \S+: syntax error",
    ),
];
/// Internal host names a response should not mention, matched in lower-cased text: a
/// case-insensitive pattern has too many spellings of its suffixes for regex to look for them
/// as literals, and would run its automaton over every byte.
const INTERNAL_NAMES: &str = r"(?-u:\b)[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:svc\.cluster\.local|ec2\.internal|compute\.internal|c\.[a-z0-9-]+\.internal)(?-u:\b)";
/// What every name [`INTERNAL_NAMES`] matches ends in: text without one is not searched.
const INTERNAL_SUFFIXES: [&str; 2] = [".local", ".internal"];

pub struct Leaks {
    /// [`TRACES`] then [`DEBUG_PAGES`], searched together: one pass over a body for both.
    traces_and_pages: RegexSet,
    /// [`INTERNAL_SUFFIXES`] in any case.
    name_suffixes: AhoCorasick,
    names: Regex,
}

/// What one pass over a body found: the first stack trace rule and the first debug page rule
/// that match.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BodyLeaks {
    pub stack_trace: Option<&'static str>,
    pub debug_page: Option<&'static str>,
}

impl Leaks {
    pub fn new() -> Self {
        let patterns = TRACES
            .iter()
            .chain(DEBUG_PAGES)
            .map(|(_, pattern)| *pattern);
        Self {
            traces_and_pages: RegexSetBuilder::new(patterns)
                .dfa_size_limit(16 << 20)
                .build()
                .expect("leak patterns compile"),
            name_suffixes: AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(INTERNAL_SUFFIXES)
                .expect("suffixes compile"),
            names: Regex::new(INTERNAL_NAMES).expect("name pattern compiles"),
        }
    }

    pub fn body(&self, body: &str) -> BodyLeaks {
        let mut found = BodyLeaks::default();
        // Most bodies leak nothing: one search that may stop at the first match tells, and is
        // cheaper than the search for every pattern that matches.
        if !self.traces_and_pages.is_match(body) {
            return found;
        }
        for index in self.traces_and_pages.matches(body).iter() {
            match TRACES.get(index) {
                Some((rule, _)) => {
                    found.stack_trace.get_or_insert(rule);
                }
                None => {
                    found
                        .debug_page
                        .get_or_insert(DEBUG_PAGES[index - TRACES.len()].0);
                }
            }
        }
        found
    }

    /// A private (RFC 1918), loopback-free address or an internal DNS name.
    pub fn internal_address(&self, text: &str) -> Option<&'static str> {
        if private_ipv4(text) {
            return Some("address.private_ipv4");
        }
        if !self.name_suffixes.is_match(text) {
            return None;
        }
        let lower = text.to_ascii_lowercase();
        self.names
            .find(&lower)
            .is_some_and(|m| ssrf::check(&format!("http://{}/", m.as_str())).is_some())
            .then_some("address.internal_name")
    }
}

/// Whether `text` spells a private address. Runs of digits and dots are found from their dots,
/// which text holds fewer of than digits, each run read once.
fn private_ipv4(text: &str) -> bool {
    let bytes = text.as_bytes();
    let dotted = |b: &u8| b.is_ascii_digit() || *b == b'.';
    let mut read_to = 0;
    for (dot, _) in text.match_indices('.') {
        if dot < read_to {
            continue;
        }
        let start = bytes[..dot]
            .iter()
            .rposition(|b| !dotted(b))
            .map_or(0, |at| at + 1);
        let end = bytes[dot..]
            .iter()
            .position(|b| !dotted(b))
            .map_or(bytes.len(), |at| dot + at);
        read_to = end;
        if dotted_quad(&bytes[start..end]).is_some_and(|ip| ip.is_private()) {
            return true;
        }
    }
    false
}

/// The address a run of digits and dots spells on its own: four numbers, maybe one trailing
/// dot ending a sentence, but not a longer dotted number (`10.2.3.4.5` is a version).
fn dotted_quad(run: &[u8]) -> Option<Ipv4Addr> {
    let mut parts = run.split(|&b| b == b'.');
    let mut end = 0;
    for _ in 0..4 {
        let part = parts.next()?;
        if !(1..=3).contains(&part.len()) {
            return None;
        }
        end += part.len() + 1;
    }
    if !parts.next().is_none_or(<[u8]>::is_empty) {
        return None;
    }
    std::str::from_utf8(&run[..end - 1]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{BodyLeaks, Leaks};

    #[test]
    fn traces_pages_and_addresses() {
        let leaks = Leaks::new();
        for (body, rule) in [
            (
                "java.lang.NullPointerException: x\n\tat com.acme.Api.get(Api.java:42)\n",
                "trace.java",
            ),
            (
                "Traceback (most recent call last):\n  File \"/app/x.py\", line 3, in <module>\n",
                "trace.python",
            ),
            (
                "panic: runtime error: index out of range\n\ngoroutine 1 [running]:\n",
                "trace.go",
            ),
            (
                "TypeError: x is undefined\n    at handler (/srv/app/index.js:10:5)\n",
                "trace.node",
            ),
            ("app/models/user.rb:12:in `find'", "trace.ruby"),
            (
                "PHP Fatal error:  Uncaught Error: x in /var/www/index.php:3",
                "trace.php",
            ),
        ] {
            assert_eq!(leaks.body(body).stack_trace, Some(rule), "{body}");
        }
        assert_eq!(
            leaks.body("<h1>Whitelabel Error Page</h1>").debug_page,
            Some("debug.spring")
        );
        assert_eq!(
            leaks
                .body("You have an error in your SQL syntax; check the manual")
                .debug_page,
            Some("debug.sql_error")
        );
        for (body, rule) in [
            ("ERROR 1772 (HY000): Malformed GTID set", "debug.sql_error"),
            ("Warning: maxdb::query():  -4004 POS(15)", "debug.sql_error"),
            (
                "[Actian][Ingres ODBC Driver][Ingres]Delimited",
                "debug.sql_error",
            ),
            ("<?php echo \"hi\" ?>", "debug.php_source"),
            ("<title>404.14 - URL too long.</title>", "debug.iis"),
        ] {
            assert_eq!(leaks.body(body).debug_page, Some(rule), "{body}");
        }
        for (body, rule) in [
            ("java.lang.NullPointerException", "trace.java"),
            (
                "com.fasterxml.jackson.databind.JsonMappingException: Unexpected",
                "trace.java",
            ),
            (
                "NameError (undefined local variable or method `x'",
                "trace.ruby",
            ),
            (
                "app/controllers/x_controller.rb:10: syntax error, unexpected",
                "trace.ruby",
            ),
        ] {
            assert_eq!(leaks.body(body).stack_trace, Some(rule), "{body}");
        }
        for text in [
            "upstream 10.12.0.7:8080 failed",
            "served by 8.8.8.8 10.0.0.1",
            "the host was 192.168.1.20.",
        ] {
            assert_eq!(
                leaks.internal_address(text),
                Some("address.private_ipv4"),
                "{text}"
            );
        }
        assert_eq!(
            leaks.internal_address("call orders.shop.svc.cluster.local"),
            Some("address.internal_name")
        );
        for body in [
            "{\"error\":\"not found\",\"at\":\"the database\"}",
            "version 10.2.3.4.5",
            "served by 8.8.8.8",
            "Exception handling is described in chapter 3",
            "<?xml version=\"1.0\"?><feed/>",
            "error 404 (not found): try again",
            "we use java.lang.Exception handling widely",
        ] {
            assert_eq!(leaks.body(body), BodyLeaks::default(), "{body}");
            assert_eq!(leaks.internal_address(body), None, "{body}");
        }
    }
}
