//! NICE CXone: connection config, the typed API client, the agent-session cache, event parsing and ACW detection.
//!
//! A connection is one business unit reached with one API user's access key (password grant) and one registered
//! application; its API base is discovered from the token's tenant. See [`client`] for the request path,
//! [`sessions`] for the joined agent sessions the disposition write needs, [`events`] for turning session events and
//! polling results into `wrapup_core::Event`s, and [`acw`] for the two ways of detecting ACW.
//! Contract: `platforms/nice-cxone.md`.

pub mod acw;
pub mod client;
pub mod error;
pub mod events;
pub mod model;
pub mod sessions;

pub use client::{AgentStateRequest, CompletedQuery, CxoneClient, CxoneConnection, NextEvent};
pub use error::{rejection, Rejection};
pub use model::*;
pub use sessions::{AgentSessions, Applied};
