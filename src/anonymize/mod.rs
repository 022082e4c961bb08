//! Anonymize: the raw IP address and user agent are used one last time, to compute each site's
//! visitor id under the day's salt, and then left behind. Nothing after this stage sees them.

pub mod salt;

use std::net::IpAddr;

use crate::classify::ua::MAX_UA_LEN;
use crate::model::text::truncate;

pub use salt::{DESTROY_AFTER_SECS, Salt, SaltSet, Salts, expired, visitor_id};

/// The visitor id of a request for `site`. The user agent is cut as classification cuts it, so
/// padding a user agent past that length does not make a new visitor.
pub fn visitor(salt: &Salt, site: &str, ip: IpAddr, user_agent: &str) -> u64 {
    visitor_id(salt, site, ip, truncate(user_agent.trim(), MAX_UA_LEN))
}
