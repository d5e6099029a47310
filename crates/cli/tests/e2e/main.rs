//! End-to-end tests: the sandbox and the service in one process, judged by the sandbox's ground truth.
//!
//! Each test shapes a small contact center (one queue or skill, fast calls, an accelerated clock) on one platform or
//! each (`harness::Side`), drives a fixed number of conversations (or, where the scenario is wall time, traffic for a
//! while), drains to quiescence, and asserts exact counts on what the sandbox saw.

mod acw_modes;
mod catalog;
mod cxone;
mod decisions;
mod demo;
mod edge;
mod harness;
mod intake;
mod invariants;
mod lookup;
mod outbox;
mod reconcile;
mod replicas;
mod report;
mod restart;
mod review;
mod secrets;
mod simulate;
mod switches;
mod validate;
mod websocket;
