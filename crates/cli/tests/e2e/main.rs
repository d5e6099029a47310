//! End-to-end tests: the sandbox and the service in one process, judged by the sandbox's ground truth.
//!
//! Each test shapes a small contact center (one queue, fast calls, an accelerated clock) so that it finishes in a
//! few seconds, runs traffic, waits until every closed window has an outcome, and asserts on what the sandbox saw.

mod acw_modes;
mod cxone;
mod demo;
mod edge;
mod harness;
mod intake;
mod invariants;
mod reconcile;
mod restart;
mod secrets;
mod switches;
mod validate;
mod websocket;
