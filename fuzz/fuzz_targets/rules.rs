//! The rules: a `RuleSet` from TOML or JSON, evaluated on arbitrary leg facts. The checks:
//! `wrapup_fuzz_checks::rules`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrapup_fuzz_checks::rules(data));
