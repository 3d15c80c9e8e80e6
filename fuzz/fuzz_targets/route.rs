//! Route matching: a request path is normalised or refused; a normalised path has no dot or empty
//! segment, normalises to itself, and a route that matches it is a whole-segment prefix of it.
#![no_main]

use gatehouse::route::{RouteMatch, normalize_path, path_under};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(n) = normalize_path(raw) else { return };
    assert!(n.starts_with('/'));
    assert!(!n.split('/').skip(1).any(|s| s == "." || s == ".."), "{raw:?} -> {n:?}");
    assert!(!n.contains("//"), "{raw:?} -> {n:?}");
    assert_eq!(normalize_path(&n).as_deref(), Ok(n.as_str()));
    static TABLE: std::sync::OnceLock<gatehouse::route::RouteTable> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(gatehouse_fuzz_table);
    if let RouteMatch::Route(r) = table.find("GET", &n) {
        assert!(path_under(&n, &r.path_prefix), "{n:?} matched {}", r.path_prefix);
    }
});

fn gatehouse_fuzz_table() -> gatehouse::route::RouteTable {
    let cfg = r#"
[http]
listen = "127.0.0.1:8080"
[[users]]
name = "u"
[[routes]]
name = "public"
path_prefix = "/public"
upstreams = ["http://127.0.0.1:9001"]
auth = ["none"]
[[routes]]
name = "admin"
path_prefix = "/admin"
upstreams = ["http://127.0.0.1:9002"]
users = ["u"]
[[routes]]
name = "deep"
path_prefix = "/public/deep/er"
upstreams = ["http://127.0.0.1:9003"]
users = ["u"]
"#;
    let env = |_: &str| None;
    gatehouse::config::load_str(cfg, "routes.toml", &env)
        .expect("the fuzz route table is valid")
        .routes
}
