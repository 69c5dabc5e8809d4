//! Background processes (servers, agents) that must not outlive the test that started them.

use std::{
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use crate::{CommandError, TestbedError, command::describe};

/// Starts `command`, to be killed when the returned handle drops.
pub fn spawn(command: &mut Command) -> Result<Background, TestbedError> {
    let description = describe(command);
    let child = command.spawn().map_err(|source| CommandError::Spawn {
        command: description.clone(),
        source,
    })?;
    Ok(Background { child, description })
}

/// A child process killed (SIGKILL) and reaped on drop, unless it already ended.
#[derive(Debug)]
pub struct Background {
    child: Child,
    description: String,
}

impl Background {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) and waits up to `timeout` for the process to end.
    /// Returns its exit status, or `None` if it was still running at the deadline.
    pub fn signal_and_wait(&mut self, signal: i32, timeout: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let pid = i32::try_from(self.child.id()).ok()?;
        // SAFETY: kill(2) on a pid we own and have not reaped, so it cannot name another process.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Err(error) = self.child.kill() {
                eprintln!("testbed: could not kill {}: {error}", self.description);
            }
            let _ = self.child.wait();
        }
    }
}
