//! CXone agent-session `get-next-event` bodies and polling records. The checks: `wrapup_fuzz_checks::cxone_events`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrapup_fuzz_checks::cxone_events(data));
