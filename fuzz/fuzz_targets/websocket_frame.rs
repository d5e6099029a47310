//! Notification API websocket frames. The checks: `wrapup_fuzz_checks::websocket_frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrapup_fuzz_checks::websocket_frame(data));
