//! Glimpse: a privacy-friendly web analytics collector.
//!
//! An event goes through these stages, each a module, in this order:
//!
//! 1. [`parse`]: body bytes → payload (Plausible-compatible fields)
//! 2. [`classify`]: page URL, referrer, browser class and coarse location
//! 3. [`filter`]: record it or not, and for which sites: site known? a person's browser? spam,
//!    a datacenter, or excluded by the site's shields?
//! 4. [`anonymize`]: visitor id from the daily salt; the IP and user agent stop here
//! 5. [`visits`]: what the event changes about its visit
//! 6. [`cardinality`]: per site and day, at most so many distinct values per dimension
//! 7. [`encode`]: the stored row, in ClickHouse RowBinary
//! 8. [`batch`]: rows gathered into batch-sized segments, written (and fsynced) to the [`spool`]
//! 9. [`spool`]: the on-disk segments, kept until ClickHouse acknowledges them
//! 10. [`deliver`]: segments inserted into ClickHouse in order, transient failures retried
//! 11. [`store`]: the ClickHouse schema, migrations, retention, salts and closed days
//!
//! [`pipeline`] runs stages 1–8 for a request; [`server`] is the collector's HTTP routes on the
//! shared [`front`]; [`collector`] wires everything together.
//!
//! The `mod` lines below are the layer order, lowest first: a module may use only modules
//! declared before it (`ARCHITECTURE.md`; a unit test enforces it).

// Shared ground: plain data and helpers that every layer above may use.
pub mod model;
pub(crate) mod settings;
pub mod clock;
mod prehashed;
pub mod metrics;
pub(crate) mod shutdown;

// The stages, in the order an event meets them. The spool is the storage that batch writes and
// deliver reads, so it sits below both.
pub mod parse;
pub mod classify;
pub mod filter;
pub mod anonymize;
pub mod visits;
pub mod cardinality;
pub mod encode;
pub mod spool;
pub mod batch;
pub mod deliver;
pub mod drops;
pub mod store;

// Around the stages: the request path, the HTTP fronts, and the wiring.
pub mod pipeline;
pub(crate) mod clientip;
pub(crate) mod ratelimit;
pub mod beacon;
pub mod front;
pub mod server;
pub mod dashboard;
pub mod config;
pub mod privacy;
pub mod collector;

#[cfg(test)]
mod layers;
