//! Genesys Cloud CX: connection config, the typed API client, event parsing and the notification websocket.
//!
//! A connection is one Genesys org reached through one or more OAuth client-credentials clients; all of them feed
//! one [`Budget`](crate::budget::Budget), so their rate limits are pooled. See [`client`] for the request path and
//! [`events`] for turning platform events into `wrapup_core::Event`s.

pub mod analytics;
pub mod client;
pub mod events;
pub mod model;
pub mod notifications;
pub mod queue_topics;

pub use client::{GenesysClient, GenesysConnection, Precondition, WRITE_MEDIA};
pub use model::*;

/// Default requests per minute per client-credentials token (`client.credentials.token.rate.per.minute`).
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 300;

/// Region name (as in the SDKs, e.g. `eu_west_1`) → API host (`platforms/genesys-cloud.md` §8). The login host is
/// the same domain with `api.` replaced by `login.`, see [`login_host`].
pub fn region_api_host(region: &str) -> Option<&'static str> {
    let normalized = region.trim().to_ascii_lowercase().replace('-', "_");
    Some(match normalized.as_str() {
        "us_east_1" => "api.mypurecloud.com",
        "us_east_2" => "api.use2.us-gov-pure.cloud",
        "us_west_2" => "api.usw2.pure.cloud",
        "ca_central_1" => "api.cac1.pure.cloud",
        "sa_east_1" => "api.sae1.pure.cloud",
        "mx_central_1" => "api.mxc1.pure.cloud",
        "eu_west_1" => "api.mypurecloud.ie",
        "eu_west_2" => "api.euw2.pure.cloud",
        "eu_central_1" => "api.mypurecloud.de",
        "eu_central_2" => "api.euc2.pure.cloud",
        "eusc_de_east_1" => "api.edee1.eusc-pure.cloud",
        "me_central_1" => "api.mec1.pure.cloud",
        "ap_south_1" => "api.aps1.pure.cloud",
        "ap_southeast_1" => "api.apse1.pure.cloud",
        "ap_southeast_2" => "api.mypurecloud.com.au",
        "ap_northeast_1" => "api.mypurecloud.jp",
        "ap_northeast_2" => "api.apne2.pure.cloud",
        "ap_northeast_3" => "api.apne3.pure.cloud",
        _ => return None,
    })
}

/// The login (token) host for an API host: `api.X` → `login.X`. Hosts without the `api.` prefix (a sandbox) log in
/// at the same host.
pub fn login_host(api_host: &str) -> String {
    match api_host.strip_prefix("api.") {
        Some(rest) => format!("login.{rest}"),
        None => api_host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_map_to_api_and_login_hosts() {
        assert_eq!(region_api_host("us_east_1"), Some("api.mypurecloud.com"));
        assert_eq!(region_api_host("eu-central-1"), Some("api.mypurecloud.de"));
        assert_eq!(region_api_host("ap_northeast_3"), Some("api.apne3.pure.cloud"));
        assert_eq!(region_api_host("mars_1"), None);
        assert_eq!(login_host("api.mypurecloud.ie"), "login.mypurecloud.ie");
        assert_eq!(login_host("127.0.0.1"), "127.0.0.1");
    }
}
