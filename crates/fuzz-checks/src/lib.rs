//! The checks behind wrapup's fuzz targets: one function per target in `fuzz/fuzz_targets/`, each taking the raw
//! input bytes and panicking when a property fails.
//!
//! They live here rather than in the fuzz crate so that one body serves two runners: cargo-fuzz (`fuzz/`, a thin
//! `fuzz_target!` per function, built with coverage instrumentation, see docs/RELIABILITY.md) and the ordinary test
//! suite, which replays the committed seeds through the same functions (`tests/seeds.rs`) without cargo-fuzz or an
//! instrumented build.

mod catalog_file;
mod config_file;
mod crm_bodies;
mod cxone_events;
mod ids_and_envelopes;
mod intake_envelope;
mod rules;
mod standard_webhooks;
mod websocket_frame;

pub use catalog_file::catalog_file;
pub use config_file::config_file;
pub use crm_bodies::crm_bodies;
pub use cxone_events::cxone_events;
pub use ids_and_envelopes::ids_and_envelopes;
pub use intake_envelope::intake_envelope;
pub use rules::rules;
pub use standard_webhooks::{standard_webhooks, standard_webhooks_input, StandardWebhooksInput};
pub use websocket_frame::websocket_frame;
