//! Running `ip` and friends, with errors that show the command line and what it printed.

use std::process::{Command, Output};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CommandError {
    #[error(
        "could not start `{command}`: {source} (is it installed? `cargo xtask setup` installs what tests need)"
    )]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// The command line as a shell user would type it, for logs and error messages.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the command to completion; a non-zero exit is an error that carries its stderr.
pub fn run(command: &mut Command) -> Result<Output, CommandError> {
    let output = command.output().map_err(|source| CommandError::Spawn {
        command: describe(command),
        source,
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(CommandError::Failed {
            command: describe(command),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Runs `ip` with the given arguments.
pub fn ip(args: &[&str]) -> Result<Output, CommandError> {
    run(Command::new("ip").args(args))
}
