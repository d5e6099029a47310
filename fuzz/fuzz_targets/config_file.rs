//! The configuration file: any text to `Config::parse_with`. The checks: `wrapup_fuzz_checks::config_file`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrapup_fuzz_checks::config_file(data));
