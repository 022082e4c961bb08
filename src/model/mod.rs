//! The bottom layer: plain data and small helpers that several stages share. Nothing here
//! depends on any other module of the crate, so every stage can depend on it.
//!
//! - [`drop`]: why an event is not recorded;
//! - [`payload`]: pieces of an event payload that travel past parsing;
//! - [`browser`]: the browser class stored about a person's browser;
//! - [`site`]: a configured site and its compiled shields;
//! - [`net`]: CIDR parsing and sets of IP ranges;
//! - [`text`]: cutting strings and normalising host names.

pub mod text;
pub mod net;
pub mod browser;
pub mod drop;
pub mod payload;
pub mod site;

pub use browser::{BrowserClass, Device};
pub use drop::DropReason;
pub use net::IpRanges;
pub use site::{Goal, GoalKind, HostPattern, PathPattern, Shields, Site};
