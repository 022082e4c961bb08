//! Pieces of an event payload that travel past parsing into the stored row.

use std::borrow::Cow;

/// Custom properties as (name, value) pairs, in the order sent.
pub type PropList<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revenue {
    /// Amount in millionths of the currency unit.
    pub micros: i64,
    /// ISO 4217 code, upper case.
    pub currency: [u8; 3],
}
