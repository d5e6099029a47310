//! Genesys Cloud regions and their hosts.
//!
//! From the platform's own SDK region table (see `platforms/genesys-cloud.md` §8): the API host is `api.<domain>`
//! and the OAuth host is `login.<domain>`.

/// `(region, domain)`.
pub const GENESYS_REGIONS: &[(&str, &str)] = &[
    ("us_east_1", "mypurecloud.com"),
    ("us_east_2", "use2.us-gov-pure.cloud"),
    ("us_west_2", "usw2.pure.cloud"),
    ("ca_central_1", "cac1.pure.cloud"),
    ("sa_east_1", "sae1.pure.cloud"),
    ("mx_central_1", "mxc1.pure.cloud"),
    ("eu_west_1", "mypurecloud.ie"),
    ("eu_west_2", "euw2.pure.cloud"),
    ("eu_central_1", "mypurecloud.de"),
    ("eu_central_2", "euc2.pure.cloud"),
    ("eusc_de_east_1", "edee1.eusc-pure.cloud"),
    ("me_central_1", "mec1.pure.cloud"),
    ("ap_south_1", "aps1.pure.cloud"),
    ("ap_southeast_1", "apse1.pure.cloud"),
    ("ap_southeast_2", "mypurecloud.com.au"),
    ("ap_northeast_1", "mypurecloud.jp"),
    ("ap_northeast_2", "apne2.pure.cloud"),
    ("ap_northeast_3", "apne3.pure.cloud"),
];

/// The domain of a Genesys region (`eu_west_1` → `mypurecloud.ie`).
pub fn genesys_domain(region: &str) -> Option<&'static str> {
    GENESYS_REGIONS.iter().find(|(r, _)| *r == region).map(|(_, d)| *d)
}
