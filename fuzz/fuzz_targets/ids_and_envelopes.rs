//! The shape rule for platform ids and the envelope checks that come with it at intake. The checks:
//! `wrapup_fuzz_checks::ids_and_envelopes`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrapup_fuzz_checks::ids_and_envelopes(data));
