//! Standard Webhooks intake auth: fuzzed header bytes and bodies through `IntakeAuth::check`. The checks:
//! `wrapup_fuzz_checks::standard_webhooks_input`. The target takes the typed input so that `cargo fuzz fmt` shows a
//! crash as headers and body; the seed replay decodes the same bytes the same way (`standard_webhooks`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wrapup_fuzz_checks::StandardWebhooksInput;

fuzz_target!(|input: StandardWebhooksInput<'_>| wrapup_fuzz_checks::standard_webhooks_input(input));
