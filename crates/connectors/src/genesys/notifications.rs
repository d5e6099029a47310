//! Notification API websocket intake.

use serde::{Deserialize, Serialize};

/// A notification channel (`POST /api/v2/notifications/channels`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    pub id: String,
    pub connect_uri: String,
    #[serde(default)]
    pub expires: Option<String>,
}
