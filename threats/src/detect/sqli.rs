//! SQL injection: the value is lexed as SQL three ways (as it is, and as if it sat inside a
//! single- or double-quoted literal) and scored on structure an injected fragment needs, so a
//! sentence that says "select a plan" or "drop table" is prose, while `' or 'a'='a` is not.

/// Tokens past this are not read: an injection shows itself in its first few dozen.
const MAX_TOKENS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    Number,
    /// A quoted literal; `closed` is false when the value ends inside it.
    Str {
        closed: bool,
    },
    Op(&'a str),
    Open,
    Close,
    Comma,
    Semicolon,
    Comment,
    Other,
}

/// The first `max_tokens` tokens of `text`, in place of what `tokens` held.
fn lex<'a>(text: &'a str, max_tokens: usize, tokens: &mut Vec<Token<'a>>) {
    let bytes = text.as_bytes();
    tokens.clear();
    let mut i = 0;
    while i < bytes.len() && tokens.len() < max_tokens {
        let byte = bytes[i];
        let start = i;
        let token = match byte {
            b if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'\'' | b'"' => {
                let (closed, end) = literal(bytes, i + 1, byte);
                i = end;
                Token::Str { closed }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes.len();
                Token::Comment
            }
            b'#' => {
                i = bytes.len();
                Token::Comment
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |end| i + 4 + end);
                Token::Comment
            }
            b'0'..=b'9' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
                Token::Number
            }
            b if b.is_ascii_alphabetic() || b == b'_' || b == b'@' || b == b'`' || b == b'$' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || matches!(bytes[i], b'_' | b'@' | b'.' | b'$' | b'`'))
                {
                    i += 1;
                }
                Token::Word(text[start..i].trim_matches('`'))
            }
            b'(' => {
                i += 1;
                Token::Open
            }
            b')' => {
                i += 1;
                Token::Close
            }
            b',' => {
                i += 1;
                Token::Comma
            }
            b';' => {
                i += 1;
                Token::Semicolon
            }
            b'=' | b'<' | b'>' | b'!' | b'|' | b'&' | b'^' | b'+' | b'-' | b'*' | b'/' | b'%'
            | b'~' => {
                while i < bytes.len()
                    && matches!(bytes[i], b'=' | b'<' | b'>' | b'!' | b'|' | b'&' | b'^')
                    && i - start < 3
                {
                    i += 1;
                }
                if i == start {
                    i += 1;
                }
                Token::Op(&text[start..i])
            }
            _ => {
                // Skip a whole UTF-8 character so slicing stays on boundaries.
                i += 1;
                while i < bytes.len() && !text.is_char_boundary(i) {
                    i += 1;
                }
                Token::Other
            }
        };
        tokens.push(token);
    }
}

/// Reads a literal quoted with `quote` from `start` (just past its opening quote): whether it
/// closes, and where the text after it starts.
fn literal(bytes: &[u8], start: usize, quote: u8) -> (bool, usize) {
    let mut i = start;
    while i < bytes.len() {
        // A backslash escape or a doubled quote stays inside the literal.
        if bytes[i] == b'\\' || (bytes[i] == quote && bytes.get(i + 1) == Some(&quote)) {
            i += 2;
        } else if bytes[i] == quote {
            return (true, i + 1);
        } else {
            i += 1;
        }
    }
    (false, i)
}

/// Functions whose call in a value is a probe: time delays, file and error-based extraction.
const PROBE_FUNCTIONS: &[&str] = &[
    "sleep",
    "benchmark",
    "pg_sleep",
    "randomblob",
    "dbms_lock.sleep",
    "dbms_pipe.receive_message",
    "load_file",
    "extractvalue",
    "updatexml",
    "xp_cmdshell",
    "sys_eval",
    "sys_exec",
    "utl_inaddr.get_host_address",
    "utl_http.request",
    "pg_read_file",
    "lo_import",
    "exp",
    "geometrycollection",
    "polygon",
    "multipoint",
    "json_keys",
    "name_const",
];
/// Functions that wait: called with a number of seconds they probe blind injection.
const DELAYS: &[&str] = &["sleep", "pg_sleep", "benchmark"];
/// Types PostgreSQL casts to with `::`, the cast error-based extraction forces.
const CAST_TYPES: &[&str] = &[
    "int", "integer", "bigint", "smallint", "text", "varchar", "char", "numeric", "double",
    "float", "bool", "boolean", "json", "jsonb", "bytea", "date", "xml",
];
/// Functions common in extraction payloads: a signal only where an expression is expected.
const SQL_FUNCTIONS: &[&str] = &[
    "char",
    "chr",
    "concat",
    "concat_ws",
    "group_concat",
    "ascii",
    "ord",
    "substring",
    "substr",
    "mid",
    "database",
    "user",
    "current_user",
    "system_user",
    "version",
    "count",
    "if",
    "iif",
    "case",
    "cast",
    "convert",
    "hex",
    "unhex",
    "length",
    "len",
    "schema",
    "md5",
    "sha1",
    "elt",
    "make_set",
    "nullif",
    "coalesce",
    "ifnull",
    "isnull",
    "select",
    "rand",
    "floor",
    "upper",
    "lower",
    "trim",
    "xmltype",
];
/// SQL Server's extended and system procedures that run commands, read the registry or
/// execute built strings: named only by SQL.
const SYSTEM_PROCEDURES: &[&str] = &[
    "xp_cmdshell",
    "xp_regread",
    "xp_regwrite",
    "xp_dirtree",
    "xp_fileexist",
    "xp_servicecontrol",
    "sp_oacreate",
    "sp_oamethod",
    "sp_executesql",
    "sp_makewebtask",
    "sp_addextendedproc",
    "sp_configure",
    "sp_password",
];
/// Databases and tables that hold the catalog: reading them maps the schema.
const CATALOGS: &[&str] = &[
    "information_schema",
    "sysobjects",
    "syscolumns",
    "sysdatabases",
    "pg_catalog",
    "pg_shadow",
    "pg_user",
    "sqlite_master",
    "mysql.user",
    "msysobjects",
    "msysaccessobjects",
    "tempdb",
    "msdb",
];
const COMPARISONS: &[&str] = &[
    "=", "==", "!=", "<>", "<", ">", "<=", ">=", "<=>", "like", "rlike", "regexp", "is", "between",
    "in", "sounds",
];
const LOGIC: &[&str] = &["or", "and", "xor", "div", "||", "&&"];
/// What must follow `;` for a stacked statement, per statement keyword.
const STACKED: &[(&str, &[&str])] = &[
    (
        "drop",
        &[
            "table",
            "database",
            "user",
            "procedure",
            "function",
            "view",
            "schema",
            "index",
        ],
    ),
    (
        "create",
        &[
            "table",
            "database",
            "user",
            "procedure",
            "function",
            "view",
            "schema",
            "index",
        ],
    ),
    ("alter", &["table", "database", "user", "login"]),
    ("truncate", &["table"]),
    ("insert", &["into"]),
    ("delete", &["from"]),
    ("exec", &[]),
    ("execute", &[]),
    ("declare", &[]),
    ("shutdown", &[]),
    ("waitfor", &["delay", "time"]),
    ("select", &[]),
    ("update", &[]),
    ("set", &[]),
];

/// The rule that a value breaks, if any.
pub fn check(value: &str) -> Option<&'static str> {
    if cast_after_call(value) {
        return Some("sqli.cast");
    }
    // One buffer for the three readings, sized for the first: prose runs to a token every few
    // bytes, and growing a vector token by token copies it again at every doubling.
    let mut tokens = Vec::with_capacity(value.len().div_ceil(4).min(MAX_TOKENS));
    lex(value, MAX_TOKENS, &mut tokens);
    if let Some(rule) = score(&tokens, false) {
        return Some(rule);
    }
    // As if the value sat inside a quoted literal: the application's opening quote, then the
    // value, whose own quote must close the literal for anything after it to be SQL.
    for quote in [b'\'', b'"'] {
        if !value.as_bytes().contains(&quote) {
            continue;
        }
        let (closed, end) = literal(value.as_bytes(), 0, quote);
        if !closed {
            continue;
        }
        // The literal counts as one token of the limit.
        lex(&value[end..], MAX_TOKENS - 1, &mut tokens);
        if let Some(rule) = score(&tokens, true) {
            return Some(rule);
        }
    }
    None
}

fn word<'a>(token: Option<&Token<'a>>) -> Option<&'a str> {
    match token {
        Some(Token::Word(word)) => Some(word),
        _ => None,
    }
}

fn is_logic(token: &Token<'_>) -> bool {
    match token {
        Token::Word(word) | Token::Op(word) => LOGIC.contains(word),
        _ => false,
    }
}

fn is_literal(token: Option<&Token<'_>>, broke_out: bool) -> bool {
    match token {
        Some(Token::Number) | Some(Token::Str { closed: true }) => true,
        // Within a broken-out literal the application's own closing quote ends the last one.
        Some(Token::Str { closed: false }) => broke_out,
        Some(Token::Word(word)) => {
            matches!(*word, "true" | "false" | "null") || word.starts_with("@@")
        }
        _ => false,
    }
}

/// Whether an expression may start at `index`: where injected SQL continues a statement.
fn expression_position(tokens: &[Token<'_>], index: usize, broke_out: bool) -> bool {
    match index
        .checked_sub(1)
        .and_then(|previous| tokens.get(previous))
    {
        None => broke_out || index == 0,
        Some(Token::Open | Token::Comma | Token::Op(_) | Token::Semicolon) => true,
        Some(token @ Token::Word(word)) => {
            is_logic(token)
                || matches!(
                    *word,
                    "select" | "where" | "having" | "when" | "then" | "else" | "by" | "not"
                )
        }
        Some(Token::Number | Token::Str { .. }) => broke_out,
        _ => false,
    }
}

fn score(tokens: &[Token<'_>], broke_out: bool) -> Option<&'static str> {
    if broke_out {
        // `admin'--`, `x')#`: the literal is closed and the rest of the query cut off.
        let first_other = tokens
            .iter()
            .find(|t| !matches!(t, Token::Close | Token::Semicolon));
        if matches!(first_other, Some(Token::Comment)) {
            return Some("sqli.comment_truncation");
        }
    }
    if !broke_out && stacked(tokens) {
        return Some("sqli.stacked_query");
    }
    for (index, token) in tokens.iter().enumerate() {
        let next = tokens.get(index + 1);
        let Token::Word(current) = token else {
            if is_logic(token) && tautology(&tokens[index + 1..], broke_out) {
                return Some("sqli.tautology");
            }
            if matches!(token, Token::Semicolon) && stacked(&tokens[index + 1..]) {
                return Some("sqli.stacked_query");
            }
            continue;
        };
        if *current == "union" {
            let after = match word(next) {
                Some("all" | "distinct") => index + 2,
                _ => index + 1,
            };
            let select = match tokens.get(after) {
                Some(Token::Open) => after + 1,
                _ => after,
            };
            if word(tokens.get(select)) == Some("select") && select_list(&tokens[select + 1..]) {
                return Some("sqli.union_select");
            }
        }
        if is_logic(token) && tautology(&tokens[index + 1..], broke_out) {
            return Some("sqli.tautology");
        }
        if current.starts_with("@@") && current.len() > 2 {
            return Some("sqli.system_variable");
        }
        // `master..xp_cmdshell`, `` `information_schema`.tables ``: names qualified or not.
        let last = current.rsplit('.').next().unwrap_or_default();
        let catalog = CATALOGS.contains(current)
            || (current.contains('.')
                && current
                    .split('.')
                    .any(|part| CATALOGS.contains(&part.trim_matches('`'))));
        if catalog || (*current == "into" && matches!(word(next), Some("outfile" | "dumpfile"))) {
            return Some("sqli.catalog_access");
        }
        if SYSTEM_PROCEDURES.contains(&last) {
            return Some("sqli.system_procedure");
        }
        if alias_from(tokens, index) {
            return Some("sqli.select_from");
        }
        let called = matches!(next, Some(Token::Open));
        let in_expression = expression_position(tokens, index, broke_out);
        // `'.sleep(12).'`, `{${sleep(12)}}`, `time.sleep(12)`: a delay of so many seconds is a
        // timing probe wherever the injected code runs.
        let delay = DELAYS.contains(&last)
            && called
            && matches!(tokens.get(index + 2), Some(Token::Number))
            && matches!(tokens.get(index + 3), Some(Token::Close));
        if delay || (called && PROBE_FUNCTIONS.contains(current) && in_expression) {
            return Some("sqli.probe_function");
        }
        // `having count(id) >= 9`: a condition on an aggregate.
        let aggregate = matches!(word(next), Some("count" | "sum" | "avg" | "min" | "max"));
        if *current == "having"
            && (aggregate || broke_out)
            && tautology(&tokens[index + 1..], broke_out)
        {
            return Some("sqli.tautology");
        }
        if *current == "waitfor" && matches!(word(next), Some("delay" | "time")) {
            return Some("sqli.probe_function");
        }
        // A literal right before the call is another value's text (`","if (`), not SQL.
        let after_literal = index > 0 && matches!(tokens[index - 1], Token::Str { .. });
        if broke_out && called && in_expression && !after_literal && SQL_FUNCTIONS.contains(current)
        {
            return Some("sqli.function_after_breakout");
        }
        if *current == "select"
            && (in_expression || broke_out)
            && (select_from(&tokens[index + 1..]) || select_expression(&tokens[index + 1..]))
        {
            return Some("sqli.select_from");
        }
        if broke_out
            && matches!(*current, "order" | "group")
            && word(next) == Some("by")
            && matches!(tokens.get(index + 2), Some(Token::Number))
        {
            return Some("sqli.order_by_probe");
        }
    }
    None
}

/// What may follow `union select`: a column list (`null,2`, `@@version`, `user()`, `name from`),
/// not the words of a name such as "Union Select Mortgage Brokers".
fn select_list(tokens: &[Token<'_>]) -> bool {
    match tokens.first() {
        None => true,
        Some(
            Token::Number
            | Token::Str { .. }
            | Token::Open
            | Token::Op(_)
            | Token::Comment
            | Token::Other,
        ) => true,
        Some(Token::Word(column)) => {
            let known_function = SQL_FUNCTIONS.contains(column) || PROBE_FUNCTIONS.contains(column);
            column.starts_with('@')
                || matches!(*column, "null" | "all" | "distinct")
                || (known_function && matches!(tokens.get(1), Some(Token::Open)))
                || matches!(
                    tokens.get(1),
                    None | Some(
                        Token::Comma
                            | Token::Comment
                            | Token::Close
                            | Token::Semicolon
                            | Token::Word("from")
                    )
                )
        }
        _ => false,
    }
}

/// `or 1=1`, `and 'a'='a`, `or 2>1`, `|| true--` (bare truth only after a breakout).
fn tautology(tokens: &[Token<'_>], broke_out: bool) -> bool {
    let mut i = 0;
    while matches!(
        tokens.get(i),
        Some(Token::Open | Token::Comment) | Some(Token::Word("not")) | Some(Token::Op("!"))
    ) {
        i += 1;
    }
    let left = tokens.get(i);
    let left_is_call =
        matches!(left, Some(Token::Word(_))) && matches!(tokens.get(i + 1), Some(Token::Open));
    let left_literal = is_literal(left, broke_out);
    let comparison = tokens.get(i + 1).and_then(|t| match t {
        Token::Op(op) | Token::Word(op) => COMPARISONS.contains(op).then_some(i + 1),
        _ => None,
    });
    if let Some(at) = comparison {
        let mut right_at = at + 1;
        if word(tokens.get(right_at)) == Some("not") {
            right_at += 1;
        }
        let right = tokens.get(right_at);
        let same_word =
            matches!((left, right), (Some(Token::Word(a)), Some(Token::Word(b))) if a == b);
        return (left_literal && is_literal(right, broke_out)) || same_word;
    }
    if left_is_call {
        // `and ascii(substr(...))>64`: a comparison follows the call's closing parenthesis.
        let mut depth = 0usize;
        for (offset, token) in tokens[i + 1..].iter().enumerate() {
            match token {
                Token::Open => depth += 1,
                Token::Close => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return matches!(tokens.get(i + 2 + offset), Some(Token::Op(op)) if COMPARISONS.contains(op));
                    }
                }
                _ => {}
            }
        }
        return false;
    }
    broke_out
        && left_literal
        && matches!(
            tokens.get(i + 1),
            None | Some(Token::Comment | Token::Semicolon | Token::Close)
        )
}

fn stacked(tokens: &[Token<'_>]) -> bool {
    let Some(statement) = word(tokens.first()) else {
        return false;
    };
    let Some((_, objects)) = STACKED.iter().find(|(keyword, _)| *keyword == statement) else {
        return false;
    };
    match statement {
        "select" => {
            select_from(&tokens[1..])
                || tokens
                    .get(1..3)
                    .is_some_and(|t| is_literal(t.first(), false))
        }
        "update" => tokens.iter().take(8).any(|t| *t == Token::Word("set")),
        "exec" | "execute" => {
            word(tokens.get(1)).is_some_and(|w| {
                w.starts_with("xp_")
                    || w.starts_with("sp_")
                    || w.starts_with("master.")
                    || w == "immediate"
            }) || matches!(tokens.get(1), Some(Token::Open))
        }
        // `;set @old_sql_mode = ...`: a user variable, not the verb.
        "set" => word(tokens.get(1)).is_some_and(|w| w.starts_with('@') && w.len() > 1),
        "declare" => word(tokens.get(1)).is_some_and(|w| w.starts_with('@')),
        "shutdown" => matches!(
            tokens.get(1),
            None | Some(Token::Comment | Token::Semicolon)
        ),
        _ => word(tokens.get(1)).is_some_and(|object| objects.contains(&object)),
    }
}

/// `select <columns> from <table>` followed by what ends or continues a query; prose such as
/// "select one from the list, then..." is not.
fn select_from(tokens: &[Token<'_>]) -> bool {
    let Some(from) = tokens
        .iter()
        .take(32)
        .position(|t| *t == Token::Word("from"))
    else {
        // `select(sleep(5))`, `select 1,2,3`, `select @@version`
        return matches!(tokens.first(), Some(Token::Number | Token::Op("*")))
            && matches!(
                tokens.get(1),
                None | Some(Token::Comma | Token::Comment | Token::Close | Token::Semicolon)
            );
    };
    if from == 0 {
        return false;
    }
    let table_follows = match tokens.get(from + 2) {
        None | Some(Token::Comment | Token::Semicolon | Token::Close | Token::Comma) => true,
        Some(Token::Word(next)) => {
            matches!(
                *next,
                "where"
                    | "limit"
                    | "order"
                    | "group"
                    | "union"
                    | "having"
                    | "join"
                    | "offset"
                    | "into"
            )
        }
        _ => false,
    };
    match tokens.get(from + 1) {
        // `from(select ...)`: a derived table.
        Some(Token::Open) => true,
        Some(Token::Word(_)) => table_follows,
        _ => false,
    }
}

/// `select char(`, `select (case when`, `select 'x'||`, `select pg_sleep`: a select list
/// that starts with SQL, with no `from` needed.
fn select_expression(tokens: &[Token<'_>]) -> bool {
    let function = |index: usize| {
        word(tokens.get(index)).is_some_and(|name| {
            (SQL_FUNCTIONS.contains(&name) || PROBE_FUNCTIONS.contains(&name))
                && matches!(tokens.get(index + 1), Some(Token::Open))
        })
    };
    match tokens.first() {
        Some(Token::Open) => matches!(word(tokens.get(1)), Some("select" | "case")) || function(1),
        Some(Token::Word(name)) => PROBE_FUNCTIONS.contains(name) || function(0),
        Some(Token::Number | Token::Str { closed: true }) => {
            matches!(tokens.get(1), Some(Token::Op("||")))
        }
        _ => false,
    }
}

/// `unistr(password)::int`: a call's result cast the PostgreSQL way.
fn cast_after_call(value: &str) -> bool {
    value.match_indices(")::").any(|(at, _)| {
        let kind = &value[at + 3..];
        let end = kind
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(kind.len());
        CAST_TYPES.contains(&&kind[..end])
    })
}

/// `) as total from`, `` `a` as `b` from ``, `1234 as "x" from`: the tail of a select list,
/// an alias after an expression and before `from` (in prose "as" follows a word).
fn alias_from(tokens: &[Token<'_>], index: usize) -> bool {
    let expression_before = match index.checked_sub(1).map(|i| &tokens[i]) {
        Some(Token::Close | Token::Number | Token::Str { closed: true }) => true,
        Some(Token::Word(name)) => name.is_empty(),
        _ => false,
    };
    tokens[index] == Token::Word("as")
        && expression_before
        && matches!(
            tokens.get(index + 1),
            Some(Token::Word(_) | Token::Str { closed: true })
        )
        && word(tokens.get(index + 2)) == Some("from")
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn injections_are_found() {
        for value in [
            "1' or '1'='1",
            "-5\" or \"a\"=\"a\" --",
            "1 or 1=1",
            "admin'--",
            "x') union all select null,null --",
            "1; drop table users",
            "1' and sleep(5)#",
            "1 and ascii(substring(user(),1,1))>64",
            "'; exec xp_cmdshell 'dir'--",
            "1' waitfor delay '0:0:5'--",
            "select(sleep(10));",
            "1' order by 3--",
            "' union select @@version,2",
            "id=1 and 1=2 union select table_name from information_schema.tables",
            "select char(113)||chr(122)",
            "1 group by concat(0x71,(select (case when (5554=5554) then 1 else 0 end)),0x71)",
            "select 6229 from(select count(*),concat(0x71,0x72))",
            ") as total from",
            "1234 as \"foobar\" from",
            "exec master..xp_cmdshell 'dir'",
            "declare @b varchar(8000)",
            "mod(1,1);set @a = x'53'",
            "from `information_schema`.tables limit 1",
            "alter table users add admin int",
            "select pg_sleep",
            "union select",
            "file:/init.ini'.sleep(12).'",
            "test{${sleep(12)}}",
            "select x group by something having count(id) >= 9",
            "unistr(password)::int",
            "encode(lo_get(16200),'base64')::int",
            "' having 1=1--",
        ] {
            assert!(check(value).is_some(), "missed {value:?}");
        }
    }

    #[test]
    fn prose_and_names_are_not() {
        for value in [
            "please select a plan from the options below, then continue",
            "Don't drop table settings in production; it breaks the reports",
            "seán o'brien",
            "o'brien -- great guy, and the team's lead",
            "i'd like to order by phone or email",
            "rock and roll or jazz",
            "choose 1 or 2",
            "we used select * carefully",
            "it's 5 o'clock and the update is done; select the next ticket",
            "i need sleep (at least 8 hours)",
            "union select mortgage brokers (uk) ltd",
            "union select realty (ireland) ltd",
            "please select (at most 3) sizes",
            "select one as soon as possible from the list",
            "known as bob from accounting",
            "set the table; set @ 5pm",
            "the tempo of msdn docs",
            "baby sleep (8 hours) schedule",
            "having fun (a lot) > work",
            "see (the docs):: text below",
            r#"["email me","if (count > 0 && ready) { return items[0]; }"]"#,
        ] {
            assert_eq!(check(value), None, "flagged {value:?}");
        }
    }
}
