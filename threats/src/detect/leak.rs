//! What responses give away: stack traces per language, framework debug and database error
//! pages, and addresses of the internal network.

use regex::{Regex, RegexSet};

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
/// Internal host names a response should not mention, in any (ASCII) case.
const INTERNAL_NAMES: &str = r"(?i-u)\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:svc\.cluster\.local|ec2\.internal|compute\.internal|c\.[a-z0-9-]+\.internal)\b";

pub struct Leaks {
    /// [`TRACES`] then [`DEBUG_PAGES`], searched together: one pass over a body for both.
    traces_and_pages: RegexSet,
    ipv4: Regex,
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
            traces_and_pages: RegexSet::new(patterns).expect("leak patterns compile"),
            ipv4: Regex::new(
                r"(?:^|[^\d.])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?:$|[^\d.]|\.(?:$|[^\d]))",
            )
            .expect("address pattern compiles"),
            names: Regex::new(INTERNAL_NAMES).expect("name pattern compiles"),
        }
    }

    pub fn body(&self, body: &str) -> BodyLeaks {
        let mut found = BodyLeaks::default();
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
        let private = self.ipv4.captures_iter(text).any(|c| {
            c.get(1)
                .and_then(|m| m.as_str().parse::<std::net::Ipv4Addr>().ok())
                .is_some_and(|ip| ip.is_private())
        });
        if private {
            return Some("address.private_ipv4");
        }
        self.names
            .find(text)
            .is_some_and(|m| {
                let host = m.as_str().to_ascii_lowercase();
                ssrf::check(&format!("http://{host}/")).is_some()
            })
            .then_some("address.internal_name")
    }
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
        assert_eq!(
            leaks.internal_address("upstream 10.12.0.7:8080 failed"),
            Some("address.private_ipv4")
        );
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
