//! The catalog file: any text to `CatalogFile::parse`. The checks: `wrapup_fuzz_checks::catalog_file`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wrapup_fuzz_checks::catalog_file(data));
