//! The wrapup service: intake, the leg scheduler and workers, the catalog cache, the admin API, and the demo.

pub mod acw_estimate;
pub mod admin;
pub mod app;
pub mod attempts;
pub mod build;
pub mod catalog;
pub mod chaos;
pub mod cxone;
pub mod dashboard;
pub mod decisions;
pub mod edge;
pub mod gauges;
pub mod genesys;
pub mod intake;
pub mod intake_auth;
pub mod jobs;
pub mod json_request;
pub mod lookup;
pub mod outbox;
pub mod outcomes;
pub mod platform;
pub mod reconciler;
pub mod scheduler;
pub mod shared_budget;
pub mod websocket;
pub mod worker;
