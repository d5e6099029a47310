//! The Genesys Cloud CX emulator: a simulated org behind the platform's real paths, next to the CXone business unit.
//!
//! State: one [`model::Org`] (catalog, users, conversations, tokens, ground truth) behind its own
//! `parking_lot::Mutex` in [`crate::Inner`]; nothing awaits while holding it. The simulation (`sim.rs`) runs on the
//! shared engine ([`crate::engine`]), so a seed and a clock determine the center. Detail events go out through
//! `events.rs` (EventBridge envelopes to every target, at least once, with faults) and the notification websockets
//! through `notifications.rs`.
//!
//! Routes (see `api/`):
//!
//! - `POST /oauth/token` (Basic auth, `grant_type=client_credentials`);
//! - `GET /api/v2/conversations/{id}`, `GET /api/v2/conversations/{calls|callbacks|emails|messages}/{id}`;
//! - `POST|GET /api/v2/conversations/{media}/{cid}/participants/{pid}/communications/{commId}/wrapup`;
//! - `PATCH /api/v2/conversations[/{media}]/{cid}/participants/{pid}`;
//! - `GET /api/v2/conversations[/{media}]/{cid}/participants/{pid}/wrapup?provisional=` and `…/wrapupcodes`;
//! - `GET|POST /api/v2/routing/wrapupcodes`, `GET|PUT|DELETE /api/v2/routing/wrapupcodes/{id}`;
//! - `GET /api/v2/routing/queues`, `GET /api/v2/routing/queues/{id}`,
//!   `GET|POST /api/v2/routing/queues/{id}/wrapupcodes`, `DELETE /api/v2/routing/queues/{id}/wrapupcodes/{codeId}`;
//! - `GET /api/v2/users/{id}/routingstatus`;
//! - `POST /api/v2/analytics/conversations/details/query`;
//! - `POST|GET /api/v2/notifications/channels`, `HEAD /api/v2/notifications/channels/{id}`,
//!   `GET|POST|PUT|DELETE /api/v2/notifications/channels/{id}/subscriptions`, websocket `GET /channels/{id}`.
//!
//! Switches for UNCONFIRMED platform behaviour ([`crate::Behaviours`], defaults first): second write on a coded leg
//! `overwrite`|`reject` (400); client-credentials writes `allowed`|`forbidden` (403 `not.authorized`); `GET …/wrapup`
//! when unset `empty200` (`{}`)|`notFound` (404); write after the ACW window closed `accepted`|`rejected` (400);
//! code not assigned to the leg's queue `accepted`|`rejected` (400); catalog DELETE `noContent204`|`ok200`.
//! Writes before the agent's part ended are always 400 (provisional ones are accepted); both count as
//! `outside_window`.

pub mod api;
pub mod events;
pub mod model;
pub mod notifications;
pub mod sim;
