//! What CRMs send: a decision body and a decision hook's answer. The checks: `wrapup_fuzz_checks::crm_bodies`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrapup_fuzz_checks::crm_bodies(data));
