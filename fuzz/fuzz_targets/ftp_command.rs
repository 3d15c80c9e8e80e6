//! The FTP control channel: any byte stream, in any pieces, goes through the vendored
//! libunftp codec (8 KiB line cap) and command parser without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = libunftp::fuzzing::control_stream(data);
});
