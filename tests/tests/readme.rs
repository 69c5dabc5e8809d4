//! The README's commands are true to the binaries: every `moat`, `moat-agent` and
//! `moat-collector` line of its shell blocks is given to the built binary with `--help` after its
//! arguments, so clap checks each subcommand, flag and value (and prints help instead of
//! running). A flag renamed in the code and not in the README fails here.

use std::path::Path;

use moat_e2e::built_binary;

/// Words of one shell line, quotes removed, up to an unquoted `#`, `|` or `&`.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for character in line.chars() {
        match (quote, character) {
            (Some(open), _) if character == open => quote = None,
            (Some(_), _) => word.get_or_insert_default().push(character),
            (None, '\'' | '"') => {
                quote = Some(character);
                word.get_or_insert_default();
            }
            (None, '#' | '|' | '&') => break,
            (None, _) if character.is_whitespace() => words.extend(word.take()),
            (None, _) => word.get_or_insert_default().push(character),
        }
    }
    words.extend(word);
    words
}

/// The README's shell-block lines that run one of Moat's binaries: (binary, its arguments).
fn readme_commands(readme: &str) -> Vec<(String, Vec<String>)> {
    let mut commands = Vec::new();
    let mut in_shell = false;
    for line in readme.lines() {
        match line.trim() {
            "```sh" => in_shell = true,
            "```" => in_shell = false,
            command if in_shell => {
                let mut words = shell_words(command);
                if words.first().is_some_and(|word| word == "sudo") {
                    words.remove(0);
                }
                if let Some(binary) = words
                    .first()
                    .and_then(|word| word.strip_prefix("target/debug/"))
                {
                    commands.push((binary.to_owned(), words[1..].to_vec()));
                }
            }
            _ => {}
        }
    }
    commands
}

#[test]
fn shell_words_follow_quotes_and_stop_at_comments_and_pipes() {
    assert_eq!(
        shell_words(r#"sudo a --x 'veth*' "Acme Corp" # a comment"#),
        ["sudo", "a", "--x", "veth*", "Acme Corp"]
    );
    assert_eq!(shell_words("a crd | kubectl apply -f -"), ["a", "crd"]);
    assert_eq!(
        shell_words("a --store sqlite:moat.db &"),
        ["a", "--store", "sqlite:moat.db"]
    );
}

#[test]
fn every_command_in_the_readme_is_accepted_by_its_binary() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("read the README");
    let commands = readme_commands(&readme);
    for binary in ["moat", "moat-agent", "moat-collector"] {
        assert!(
            commands.iter().any(|(name, _)| name == binary),
            "the README shows no {binary} command: {commands:?}"
        );
    }
    for (binary, arguments) in &commands {
        let output = std::process::Command::new(built_binary(binary))
            .args(arguments)
            .arg("--help")
            .output()
            .unwrap_or_else(|error| panic!("run {binary}: {error}"));
        assert!(
            output.status.success(),
            "README: `{binary} {}` is refused by the binary: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The check can fail: a flag the binary does not have is refused.
    let refused = std::process::Command::new(built_binary("moat"))
        .args(["calls", "--no-such-flag", "--help"])
        .output()
        .expect("run moat");
    assert!(!refused.status.success());
}
