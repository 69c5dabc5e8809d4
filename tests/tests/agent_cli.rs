//! moat-agent fails with one clear line, not a panic, when it cannot do its job.

use std::process::{Command, Output};

use moat_e2e::{agent_binary, require_root};

fn assert_one_line_error(output: &Output, expected: &[&str]) {
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit status of a failed start"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{stderr}");
    assert!(lines[0].starts_with("moat-agent: error: "), "{stderr}");
    for phrase in expected {
        assert!(
            lines[0].contains(phrase),
            "{phrase:?} missing from: {stderr}"
        );
    }
    for noise in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(noise), "{noise:?} in: {stderr}");
    }
}

#[test]
fn an_interface_that_does_not_exist_is_named_with_a_hint() {
    require_root();
    let output = Command::new(agent_binary())
        .args(["--iface", "moat-nope0"])
        .output()
        .expect("run moat-agent");
    assert_one_line_error(&output, &["\"moat-nope0\" does not exist", "ip -br link"]);
}

#[test]
fn without_privileges_it_says_which_capabilities_are_missing() {
    require_root();
    // setpriv drops to `nobody` with no capabilities, as an operator without sudo would run it.
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(agent_binary())
        .args(["--iface", "lo"])
        .output()
        .expect("run setpriv (util-linux)");
    assert_one_line_error(
        &output,
        &["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "sudo"],
    );
}

#[test]
fn an_invalid_policy_stops_the_start_with_file_line_and_field() {
    require_root();
    let directory = std::env::temp_dir().join(format!("moat-cli-policy-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("directory");
    let policy = directory.join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - { name: r, action: deny, from: nowhere, to: any }\n",
    )
    .expect("policy");
    let output = Command::new(agent_binary())
        .args(["--iface", "lo", "--policy"])
        .arg(&policy)
        .output()
        .expect("run moat-agent");
    let missing = Command::new(agent_binary())
        .args(["--iface", "lo", "--policy"])
        .arg(directory.join("absent.yaml"))
        .output()
        .expect("run moat-agent");
    let _ = std::fs::remove_dir_all(&directory);
    let location = format!("{}:2:", policy.display());
    assert_one_line_error(
        &output,
        &[&location, "rules[0].from", "no identity named \"nowhere\""],
    );
    assert_one_line_error(&missing, &["absent.yaml", "cannot read the policy file"]);
}

#[test]
fn help_explains_each_flag() {
    let output = Command::new(agent_binary())
        .arg("--help")
        .output()
        .expect("run moat-agent --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--policy",
        "--iface-glob",
        "--hook",
        "--state-dir",
        "--metrics-addr",
        "--iface",
        "--xdp-mode",
        "--output",
        "--report-interval",
        "--log-level",
        "--help",
        "--version",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    assert!(
        help.contains("native") && help.contains("generic"),
        "XDP modes explained:\n{help}"
    );
}
