//! `POST /intake/{connection}` bodies. The checks: `wrapup_fuzz_checks::intake_envelope`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrapup_fuzz_checks::intake_envelope(data));
