//! TLS plaintext through OpenSSL uprobes, end to end: nginx serving TLS 1.2 and 1.3 in a pod
//! (with a test CA made by the openssl command line), curl and python's `ssl` calling it from
//! another pod, all started after the agent; a server in another mount namespace whose libssl is
//! a different file at the same path; and a client on rustls, whose TLS Moat cannot read, which
//! must give `visibility.tls_opaque` rather than silence.
//!
//! Each test captures only its own ports, so tests running at once do not see each other's calls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, net::SocketAddr, os::unix::fs::MetadataExt as _, time::Duration};

use moat_e2e::{
    Scratch, StateDir,
    capture::{calls_since, capture_agent},
    require_root,
    tls::{
        Issued, NginxServer, TestCa, curl, python_get, start_nginx, start_nginx_wrapped, test_ca,
    },
    two_pods,
};
use serde_json::Value;
use testbed::Pod;

/// What must be the same whether a call was read in clear or as TLS plaintext. Which ends named
/// their process is checked apart: a clear call that completes as its connection closes may be
/// reported before the server's end is matched with it.
fn essence(call: &Value) -> Value {
    serde_json::json!({
        "protocol": call["protocol"],
        "method": call["method"],
        "path": call["path"],
        "query": call["query"],
        "status": call["status"],
        "request_body_bytes": call["request"]["body_bytes"],
        "response_body_bytes": call["response"]["body_bytes"],
        "complete": [call["request"]["complete"], call["response"]["complete"]],
        "flags": call["flags"],
        "client_comm": call["client"]["comm"],
    })
}

/// The server pod's certificate, for its address and the name `server.test`.
fn server_certificate(ca: &TestCa, server: &Pod) -> Issued {
    ca.issue(
        "server",
        "server.test",
        &[&format!("IP:{}", server.ipv4), "DNS:server.test"],
        1,
    )
    .expect("issue the server's certificate")
}

#[test]
fn curl_and_python_over_tls_1_2_and_1_3_give_the_calls_made_in_clear_marked_tls_once() {
    require_root();
    let (node, client, server) = two_pods("tlsup");
    let scratch = Scratch::new("tlsup");
    let ca = test_ca(&scratch.0);
    let certificate = server_certificate(&ca, &server);
    let state = StateDir::new();
    let (tls_port, clear_port) = (18443, 18080);
    let mut agent = capture_agent(&node, &state, &[tls_port, clear_port], &[]);
    // The server and every client start after the agent.
    let tls = SocketAddr::new(server.ipv4.into(), tls_port);
    let clear = SocketAddr::new(server.ipv4.into(), clear_port);
    let _nginx = start_nginx(
        &server,
        &scratch.0,
        &[
            NginxServer {
                port: tls_port,
                certificate: Some(&certificate),
                protocols: "TLSv1.2 TLSv1.3",
                client_ca: None,
            },
            NginxServer {
                port: clear_port,
                certificate: None,
                protocols: "",
                client_ca: None,
            },
        ],
    );

    let mark = agent.mark();
    let mut made = 0;
    for version in ["1.2", "1.3"] {
        for (scheme, address) in [("https", tls), ("http", clear)] {
            let get = format!("{scheme}://{address}/curl/{version}?n=1");
            assert_eq!(
                curl(&client, &ca, &get, version, &[]),
                format!("GET /curl/{version}\n")
            );
            let post = format!("{scheme}://{address}/curl-post/{version}");
            assert_eq!(
                curl(&client, &ca, &post, version, &["-d", "name=value&more=1"]),
                format!("POST /curl-post/{version}\n")
            );
            let python = format!("{scheme}://{address}/python/{version}");
            assert_eq!(
                python_get(&client, &ca, &python, version),
                format!("GET /python/{version}\n")
            );
            made += 3;
        }
    }
    let calls = calls_since(&mut agent, mark, made);
    let mut by_path: BTreeMap<String, (Vec<&Value>, Vec<&Value>)> = BTreeMap::new();
    for call in &calls {
        let path = call["path"].as_str().unwrap_or_default().to_owned();
        let entry = by_path.entry(path).or_default();
        if call["tls"] == true {
            entry.0.push(call);
        } else {
            entry.1.push(call);
        }
    }
    assert_eq!(
        by_path.len(),
        6,
        "one path per client and version: {by_path:#?}"
    );
    for (path, (tls_calls, clear_calls)) in &by_path {
        assert_eq!(
            (tls_calls.len(), clear_calls.len()),
            (1, 1),
            "{path}: each call is reported once over TLS and once in clear, never twice: \
             {calls:#?}"
        );
        let (tls_call, clear_call) = (tls_calls[0], clear_calls[0]);
        assert_eq!(tls_call["server"]["port"], tls_port, "{tls_call}");
        assert_eq!(clear_call["server"]["port"], clear_port, "{clear_call}");
        assert_eq!(tls_call["tls_library"], "libssl.so.3", "{tls_call}");
        assert_eq!(clear_call["tls"], false, "{clear_call}");
        assert!(clear_call.get("tls_library").is_none(), "{clear_call}");
        assert_eq!(
            essence(tls_call),
            essence(clear_call),
            "{path}: the TLS plaintext gives the same call as in clear"
        );
        assert_eq!(
            tls_call["seen_at"],
            serde_json::json!(["client", "server"]),
            "both ends run OpenSSL: the call is read at both and reported once: {tls_call}"
        );
        assert_eq!(tls_call["server"]["comm"], "nginx", "{tls_call}");
    }
    let records = agent.stop();
    assert!(
        !records
            .iter()
            .any(|record| record["finding"] == "visibility.tls_opaque"),
        "curl, python and nginx use OpenSSL: nothing is opaque"
    );
    drop(node);
}

#[test]
fn a_server_in_another_mount_namespace_is_hooked_and_a_rustls_client_is_reported_opaque() {
    require_root();
    let (node, client, server) = two_pods("tlsmnt");
    let scratch = Scratch::new("tlsmnt");
    let ca = test_ca(&scratch.0);
    let certificate = server_certificate(&ca, &server);
    let host_library = std::fs::canonicalize("/usr/lib/x86_64-linux-gnu/libssl.so.3")
        .expect("the host's libssl.so.3");
    // Another file with the same contents: as a container's own libssl would be.
    let own_library = scratch.file("libssl.so.3");
    std::fs::copy(&host_library, &own_library).expect("copy libssl.so.3");
    let own_inode = std::fs::metadata(&own_library).unwrap().ino();
    let state = StateDir::new();
    let port = 19443;
    let mut agent = capture_agent(&node, &state, &[port], &[]);
    // In its own mount namespace, nginx finds the copy at the host library's path: attaching by
    // that path from the host would hook the host's file, not the one nginx runs.
    let mount = format!(
        "mount --bind {} {} && exec \"$0\" \"$@\"",
        own_library.display(),
        host_library.display()
    );
    let address = SocketAddr::new(server.ipv4.into(), port);
    let nginx = start_nginx_wrapped(
        &server,
        &scratch.0,
        &[NginxServer {
            port,
            certificate: Some(&certificate),
            protocols: "TLSv1.2 TLSv1.3",
            client_ca: None,
        }],
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &mount,
        ],
    );
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", nginx.id())).unwrap();
    assert!(
        maps.lines().any(|line| line.ends_with("libssl.so.3")
            && line.split_whitespace().nth(4) == Some(&own_inode.to_string())),
        "nginx maps its own copy of libssl:\n{maps}"
    );
    // The agent finds the new library file on its next scan of the processes.
    agent.wait_for(Duration::from_secs(10), |record| {
        record["kind"] == "agent.capture_stats"
            && record["tls_libraries_attached"].as_u64().unwrap_or(0) >= 2
    });

    let mark = agent.mark();
    let ca_file = ca.root.certificate().to_owned();
    let paths = ["/rustls/1", "/rustls/2", "/rustls/3"];
    let mut args = vec![
        "tls-get".to_owned(),
        address.to_string(),
        server.ipv4.to_string(),
        ca_file,
    ];
    args.extend(paths.iter().map(|path| (*path).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = client
        .run(env!("CARGO_BIN_EXE_rust-peer"), &args)
        .expect("rust-peer tls-get");
    let output = String::from_utf8_lossy(&output.stdout);
    for path in paths {
        assert!(
            output.contains(&format!("{path} HTTP/1.1 200 OK")),
            "{path}: {output}"
        );
    }
    let calls = calls_since(&mut agent, mark, paths.len());
    for path in paths {
        let seen: Vec<&Value> = calls.iter().filter(|call| call["path"] == path).collect();
        assert_eq!(seen.len(), 1, "{path} once: {calls:#?}");
        let call = seen[0];
        assert_eq!(call["tls"], true, "{call}");
        assert_eq!(
            call["seen_at"],
            serde_json::json!(["server"]),
            "read from nginx's own libssl only: the rustls client gives no plaintext: {call}"
        );
        assert_eq!(call["server"]["comm"], "nginx", "{call}");
        assert_eq!(call["client"]["comm"], "rust-peer", "{call}");
        assert_eq!(call["status"], 200, "{call}");
    }
    drop(nginx);
    let records = agent.stop();
    let opaque: Vec<&Value> = records
        .iter()
        .filter(|record| record["finding"] == "visibility.tls_opaque")
        .collect();
    assert_eq!(
        opaque.len(),
        1,
        "one finding for the rustls process, not one per connection, none for nginx: {opaque:#?}"
    );
    let finding = opaque[0];
    assert_eq!(finding["kind"], "api.finding", "{finding}");
    assert_eq!(finding["source"]["comm"], "rust-peer", "{finding}");
    assert_eq!(finding["destination"]["port"], port, "{finding}");
    drop(node);
}
