//! Glimpse: a privacy-friendly web analytics collector.
//!
//! A request flows through these stages, each a module, in this order:
//!
//! 1. [`parse`]: body bytes → payload (Plausible-compatible fields)
//! 2. [`check`]: record it or not: site known and URL valid? a person's browser? spam, a
//!    datacenter, or excluded by the site's shields?
//! 3. [`enrich`]: coarse location, browser class, page/referrer/UTM fields
//! 4. [`anonymize`]: visitor id from the daily salt; the IP and user agent stop here; [`visits`]
//!    says what each event changes about its visit
//! 5. [`batch`]: encoded rows gathered into batch-sized segments, group-committed to disk
//! 6. [`spool`]: the on-disk segments, kept until ClickHouse acknowledges them
//! 7. [`deliver`]: segments inserted into ClickHouse in order, transient failures retried
//! 8. [`store`]: the ClickHouse schema, migrations, retention and salts table
//!
//! [`pipeline`] runs stages 1–4 for a request; [`server`] is the HTTP front and [`collector`]
//! wires everything together.

pub mod config;

// The stages, in the order a request meets them.
pub mod parse;

pub mod check;

pub mod enrich;

pub mod anonymize;

pub mod visits;

pub mod event;

pub mod batch;

pub mod spool;

pub mod deliver;

pub mod store;

// Around the stages.
pub mod beacon;
pub mod clientip;
pub mod clock;
pub mod collector;
pub mod dashboard;
pub mod metrics;
pub mod pipeline;
mod prehashed;
pub mod privacy;
pub mod ratelimit;
pub mod server;
