//! Config loading: any document gives a valid config or a list of errors, each naming a key;
//! never a panic. `${NAME}` expands only to a fixed test variable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |name: &str| (name == "FUZZ").then(|| "value".to_string());
    if let Err(errs) = gatehouse::config::load_str(text, "fuzz.toml", &env) {
        assert!(!errs.errors.is_empty());
        for e in &errs.errors {
            assert!(!e.key.is_empty() && !e.msg.is_empty(), "{e:?}");
        }
    }
});
