//! PHP code injection: open tags, template tags that run PHP, calls of functions only PHP code
//! calls, calls through variables, superglobals and serialized objects.

use aho_corasick::AhoCorasick;

/// Functions whose names only PHP code spells: a call of one in a value is PHP, whatever its
/// arguments.
const PHP_ONLY_FUNCTIONS: &[&str] = &[
    "shell_exec",
    "proc_open",
    "pcntl_exec",
    "call_user_func",
    "call_user_func_array",
    "create_function",
    "base64_decode",
    "gzinflate",
    "gzuncompress",
    "gzdecode",
    "str_rot13",
    "fsockopen",
    "pfsockopen",
    "curl_init",
    "curl_exec",
    "file_get_contents",
    "file_put_contents",
    "move_uploaded_file",
    "print_r",
    "var_dump",
    "var_export",
    "assert_options",
    "phpinfo",
    "php_uname",
    "ini_set",
    "ini_get",
    "highlight_file",
    "show_source",
    "get_defined_vars",
    "unserialize",
    "preg_replace",
    "posix_getpwuid",
    "posix_kill",
    "stream_get_contents",
];
/// Request and environment arrays: only PHP code names them.
const SUPERGLOBALS: &[&str] = &[
    "$_get",
    "$_post",
    "$_cookie",
    "$_request",
    "$_server",
    "$_files",
    "$_env",
    "$_session",
    "$globals",
];
/// Tags with which template engines and forums run PHP: Smarty's `{php}`, BBCode's `[php]`.
const TEMPLATE_TAGS: &[&str] = &["{php}", "{/php}", "[php]", "[/php]"];

/// The PHP names, found in one pass.
pub struct Php {
    /// [`PHP_ONLY_FUNCTIONS`], then [`SUPERGLOBALS`].
    names: AhoCorasick,
}

impl Php {
    pub fn new() -> Self {
        let names = AhoCorasick::new(PHP_ONLY_FUNCTIONS.iter().chain(SUPERGLOBALS))
            .expect("php names compile");
        Self { names }
    }

    /// The rule the `value` (lower-cased) breaks, if any.
    pub fn check(&self, value: &str) -> Option<&'static str> {
        if open_tag(value) {
            return Some("code.php");
        }
        if value.contains("php") {
            if TEMPLATE_TAGS.iter().any(|tag| value.contains(tag)) {
                return Some("code.php");
            }
            if value.contains("php://") {
                return Some("code.php_wrapper");
            }
        }
        if value.contains("phar://") {
            return Some("code.php_wrapper");
        }
        // A function counts only called and a superglobal only with its `$`: prose with
        // neither is not searched for the names.
        let names = value
            .contains(['(', '$'])
            .then(|| self.names.find_overlapping_iter(value))
            .into_iter()
            .flatten();
        for found in names {
            let is_function = found.pattern().as_usize() < PHP_ONLY_FUNCTIONS.len();
            if is_function && call_opens(value, found.start(), found.end()) {
                return Some("code.php_function");
            }
            // Indexed (`$_GET['c']`) or the whole value (a parameter named `$_COOKIE`): prose
            // that mentions `$_POST` does neither.
            let after = value[found.end()..].trim_start();
            let used = after.starts_with('[') || value.trim() == &value[found.start()..found.end()];
            if !is_function && used {
                return Some("code.php_superglobal");
            }
        }
        if variable_call(value) {
            return Some("code.php_variable_call");
        }
        serialized_object(value).then_some("code.php_object")
    }
}

/// `<?php`, `<?=`, `<? ` and `<?xml` that is no XML declaration (PHP's short tags read it as
/// `<?` followed by code); processing instructions (`<?xml-stylesheet`) are markup.
fn open_tag(value: &str) -> bool {
    value.match_indices("<?").any(|(at, _)| {
        let after = &value[at + 2..];
        if after.is_empty() || after.starts_with(|c: char| c.is_whitespace() || c == '=') {
            return true;
        }
        if after.starts_with("php") {
            return true;
        }
        let Some(rest) = after.strip_prefix("xml") else {
            return false;
        };
        let declaration = rest.trim_start();
        !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
            && !["version", "encoding", "standalone", "?>"]
                .iter()
                .any(|part| declaration.starts_with(part))
    })
}

/// Whether the name at `start..end` of `value` is called: the name whole (not the end of a
/// longer identifier), then whitespace and comments, then `(`.
fn call_opens(value: &str, start: usize, end: usize) -> bool {
    let before = value[..start].chars().next_back();
    if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
        return false;
    }
    value[end + skip_blanks(&value[end..])..].starts_with('(')
}

/// The length of the whitespace and comments (`/* */`, `//` and `#` to the line's end) that
/// start `text`.
pub fn skip_blanks(text: &str) -> usize {
    let mut at = 0;
    loop {
        let rest = &text[at..];
        let trimmed = rest.trim_start();
        at += rest.len() - trimmed.len();
        if let Some(comment) = trimmed.strip_prefix("/*") {
            at += 2 + comment.find("*/").map_or(comment.len(), |end| end + 2);
        } else if trimmed.starts_with("//") || trimmed.starts_with('#') {
            at += trimmed.find('\n').unwrap_or(trimmed.len());
        } else {
            return at;
        }
    }
}

/// `$f(`, `$__['o'](`, `${'a'}(`, `$obj->$name(`: a function called through a variable, with
/// any indexing between.
fn variable_call(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.match_indices('$').any(|(at, _)| {
        let mut i = at;
        while matches!(bytes.get(i), Some(b'$' | b'@')) {
            i += 1;
        }
        let name_len = identifier_len(&value[i..]);
        if name_len > 0 {
            i += name_len;
        } else if bytes.get(i) == Some(&b'{') {
            match value[i..].find('}') {
                Some(close) => i += close + 1,
                None => return false,
            }
        } else {
            return false;
        }
        // Indexing, members and static members before the call, each at most a few times.
        for _ in 0..8 {
            i += skip_blanks(&value[i..]);
            let rest = &value[i..];
            let closer = match rest.as_bytes().first() {
                Some(b'[') => ']',
                Some(b'{') => '}',
                Some(b'(') => return true,
                _ => {
                    let member = rest
                        .strip_prefix("->")
                        .or_else(|| rest.strip_prefix("::"))
                        .map(|m| m.trim_start_matches('$'));
                    match member.map(identifier_len) {
                        Some(len) if len > 0 => {
                            i = value.len() - member.unwrap_or_default().len() + len;
                            continue;
                        }
                        _ => return false,
                    }
                }
            };
            match rest.find(closer) {
                Some(close) => i += close + 1,
                None => return false,
            }
        }
        false
    })
}

fn identifier_len(text: &str) -> usize {
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        return 0;
    }
    text.bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count()
}

/// `O:8:"stdClass":1:{...}`: a serialized PHP object, which `unserialize` turns into an
/// instance whose magic methods run.
fn serialized_object(value: &str) -> bool {
    value.match_indices(':').any(|(at, _)| {
        let before = &value[..at];
        if !(before.ends_with('o') || before.ends_with('c')) {
            return false;
        }
        let boundary = before[..before.len() - 1]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        let rest = &value[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Some(name) = rest[digits..].strip_prefix(":\"") else {
            return false;
        };
        let Some(close) = name.find('"') else {
            return false;
        };
        let length_matches = rest[..digits].parse::<usize>().ok() == Some(close);
        boundary && digits > 0 && length_matches && name[close + 1..].starts_with(':')
    })
}

#[cfg(test)]
mod tests {
    use super::Php;

    #[test]
    fn php_is_found() {
        let php = Php::new();
        for value in [
            "<?php system($_get['c']); ?>",
            "<? echo 'hello'; ?>",
            "<?xml :system('ls');",
            "<?=`id`?>",
            "{php}echo 1;{/php}",
            "[php]system('whoami');[/php]",
            "x=$_server['test'];",
            "base64_decode(",
            "i don't like gzuncompress/*comment*/()",
            "print_r( )",
            "$a(1)",
            "$__['o'](5)",
            "${'a'}(11)",
            "$_ab_4c[@5]/*wat*/[@d] ()",
            "$foo->$funcname()",
            "foo::$variable()",
            "o:8:\"stdclass\":1:{s:1:\"a\";i:2;}",
            "php://filter/convert.base64-encode/resource=index.php",
        ] {
            assert!(php.check(value).is_some(), "missed {value:?}");
        }
    }

    #[test]
    fn prose_markup_and_scripts_are_not() {
        let php = Php::new();
        for value in [
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><a>1</a>",
            "<?xml-stylesheet href=\"style.css\"?>",
            "costs $5 (approx) or $10 (with tax)",
            "$('#menu').hide()",
            "we decode base64 data in the print_r docs",
            "status: ok; o:5 items",
            "mix:\"a\":b",
            "we use $_post in legacy code",
        ] {
            assert_eq!(php.check(value), None, "flagged {value:?}");
        }
    }
}
