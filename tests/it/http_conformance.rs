//! HTTP/1.1 conformance details (issue 11): a request without `Host`, or with two, is a 400
//! (RFC 9112 3.2); authenticated file responses say `Cache-Control: private`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::Gateway;
use crate::security::config;

fn raw(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).to_string()
}

#[test]
fn host_is_required_once_and_file_responses_are_private() {
    let gw = Gateway::start(&config(""));
    std::fs::create_dir_all(gw.path("data/acme")).unwrap();
    std::fs::write(gw.path("data/acme/a.txt"), "hello").unwrap();
    let auth = "Authorization: Basic YWNtZTpzZWNyZXQ=\r\n"; // acme:secret
    let none = raw(
        gw.http,
        format!("GET /v1/files/a.txt HTTP/1.1\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    );
    assert!(none.starts_with("HTTP/1.1 400"), "{none}");
    let two = raw(
        gw.http,
        format!(
            "GET /v1/files/a.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n{auth}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    // HTTP/1.0 needs no Host.
    let old = raw(
        gw.http,
        format!("GET /v1/files/a.txt HTTP/1.0\r\n{auth}\r\n").as_bytes(),
    );
    assert!(
        old.starts_with("HTTP/1.0 200") || old.starts_with("HTTP/1.1 200"),
        "{old}"
    );
    let ok = raw(
        gw.http,
        format!("GET /v1/files/a.txt HTTP/1.1\r\nHost: gw\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.to_lowercase().contains("cache-control: private"), "{ok}");
    assert!(ok.ends_with("hello"), "{ok}");
}
