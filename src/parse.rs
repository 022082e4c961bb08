//! Parse: request body bytes to a [`Payload`] that borrows from the body where it can.
//!
//! Accepts the Plausible Events API payload (short and long field names), so existing integrations
//! work unchanged. Every rejection says which field is wrong and why.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::model::text::truncate;

pub use crate::model::payload::{PropList, Revenue};

/// Limits that keep one event small; they mirror what Plausible accepts.
pub(crate) const MAX_NAME_LEN: usize = 120;
pub const MAX_URL_LEN: usize = 2000;
pub const MAX_PROPS: usize = 30;
pub(crate) const MAX_PROP_KEY_LEN: usize = 300;
pub(crate) const MAX_PROP_VALUE_LEN: usize = 2000;
pub(crate) const MAX_DOMAINS: usize = 10;

/// One event as sent by a browser, not yet trusted beyond its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload<'a> {
    pub name: Cow<'a, str>,
    pub url: Cow<'a, str>,
    /// Raw `d` field: one site or a comma-separated list.
    pub domain: Option<Cow<'a, str>>,
    pub referrer: Option<Cow<'a, str>>,
    pub props: PropList<'a>,
    pub hash_mode: bool,
    pub interactive: bool,
    pub revenue: Option<Revenue>,
    /// What an `engagement` event reports (`sd`, `e`); `None` for every other event.
    pub engagement: Option<Engagement>,
}

/// An `engagement` report of the official tracker: how far the page was scrolled, and how long
/// it was visible and focused since the previous report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Engagement {
    /// Maximum scroll depth so far, percent (0–100).
    pub scroll_depth: u8,
    /// Engaged milliseconds since the previous report, capped at [`MAX_ENGAGED_MS`].
    pub engaged_ms: u32,
}

/// One report covers at most this much engaged time; a tab left focused for hours would
/// otherwise outweigh every real reader of the page.
pub(crate) const MAX_ENGAGED_MS: u32 = 30 * 60 * 1000;

/// The event name of engagement reports.
pub(crate) const ENGAGEMENT: &str = "engagement";

/// Why a payload was rejected; the text goes back to the client in a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Parses a JSON body. serde_json's recursion limit bounds nesting depth.
pub fn parse_json(body: &[u8]) -> Result<Payload<'_>, ParseError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError(
            "empty body: expected a JSON object with at least `n` and `u`".into(),
        ));
    }
    let raw: RawPayload<'_> =
        serde_json::from_slice(body).map_err(|e| ParseError(describe_json_error(&e)))?;
    raw.finish()
}

/// Parses the query string of the no-JavaScript pixel (`/api/event.gif?n=pageview&u=…`).
pub fn parse_query(query: &str) -> Result<Payload<'_>, ParseError> {
    parse_query_raw(query)?.finish()
}

fn parse_query_raw(query: &str) -> Result<RawPayload<'_>, ParseError> {
    let mut raw = RawPayload::default();
    let mut seen = 0;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let field = Field::once(k, &mut seen, QUERY_FORM).map_err(ParseError)?;
        let v = decode_component(v);
        match field {
            Field::Name => raw.name = Some(v),
            Field::Url => raw.url = Some(v),
            Field::Domain => raw.domain = Some(v),
            Field::Referrer => raw.referrer = Some(v),
            Field::HashMode => raw.hash_mode = v != "0" && v != "false" && !v.is_empty(),
            Field::Interactive => raw.interactive = Some(v != "0" && v != "false"),
            Field::Props | Field::Meta => {
                merge_props(&mut raw.props, parse_props_string(&v)?)
                    .map_err(|e| ParseError(format!("`{k}`: {e}")))?;
            }
            Field::ScrollDepth => raw.scroll_depth = Some(query_count("sd", &v)?),
            Field::Engaged => raw.engaged_ms = Some(query_count("e", &v)?),
            Field::Version => {}
            Field::ScreenWidth => {
                query_count(k, &v)?;
            }
            Field::Revenue => return Err(ParseError(unknown_field(k, QUERY_FORM))),
        }
    }
    Ok(raw)
}

/// A count in the pixel's query string, as [`next_count`] reads one from JSON.
fn query_count(field: &str, v: &str) -> Result<u64, ParseError> {
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n.round().min(u64::MAX as f64) as u64),
        _ => Err(ParseError(format!(
            "`{field}`: expected a number of at least 0, got {v:?}"
        ))),
    }
}

/// The pixel's query string, with `n` defaulting to `pageview` and `u` to `referer`.
pub fn parse_query_with_defaults<'a>(
    query: &'a str,
    referer: Option<&'a str>,
) -> Result<Payload<'a>, ParseError> {
    let mut raw = parse_query_raw(query)?;
    raw.name.get_or_insert(Cow::Borrowed("pageview"));
    if raw.url.is_none() {
        raw.url = referer.map(Cow::Borrowed);
    }
    raw.finish()
}

fn decode_component(v: &str) -> Cow<'_, str> {
    if !v.contains(['%', '+']) {
        return Cow::Borrowed(v);
    }
    let spaced = v.replace('+', " ");
    Cow::Owned(
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// serde_json's messages are good but name no field when a type is wrong at the top level;
/// ours prefix the field (see `field_err`), so only syntax errors are reworded here.
fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => format!("body is not valid JSON: {e}"),
        Category::Io => format!("could not read body: {e}"),
        Category::Data => e.to_string(),
    }
}

#[derive(Default)]
struct RawPayload<'a> {
    name: Option<Cow<'a, str>>,
    url: Option<Cow<'a, str>>,
    domain: Option<Cow<'a, str>>,
    referrer: Option<Cow<'a, str>>,
    props: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    hash_mode: bool,
    interactive: Option<bool>,
    revenue: Option<Revenue>,
    scroll_depth: Option<u64>,
    engaged_ms: Option<u64>,
}

impl<'a> RawPayload<'a> {
    fn finish(self) -> Result<Payload<'a>, ParseError> {
        let name = self
            .name
            .ok_or_else(|| ParseError("missing field `n` (event name)".into()))?;
        let url = self
            .url
            .ok_or_else(|| ParseError("missing field `u` (page URL)".into()))?;
        check_len("n", &name, MAX_NAME_LEN)?;
        if name.trim().is_empty() {
            return Err(ParseError("`n`: event name must not be empty".into()));
        }
        check_len("u", &url, MAX_URL_LEN)?;
        if url.is_empty() {
            return Err(ParseError("`u`: page URL must not be empty".into()));
        }
        if let Some(r) = &self.referrer {
            check_len("r", r, MAX_URL_LEN)?;
        }
        if let Some(d) = &self.domain {
            check_len("d", d, MAX_DOMAINS * 254)?;
            if d.split(',').filter(|s| !s.trim().is_empty()).count() > MAX_DOMAINS {
                return Err(ParseError(format!("`d`: at most {MAX_DOMAINS} domains")));
            }
        }
        let engagement = if name == ENGAGEMENT {
            Some(Engagement {
                // The official tracker divides by a height that can shrink after the fact, so
                // it may report more than 100 %.
                scroll_depth: self.scroll_depth.unwrap_or(0).min(100) as u8,
                engaged_ms: self.engaged_ms.unwrap_or(0).min(u64::from(MAX_ENGAGED_MS)) as u32,
            })
        } else {
            for (field, value) in [("sd", self.scroll_depth), ("e", self.engaged_ms)] {
                if value.is_some() {
                    return Err(ParseError(format!(
                        "`{field}`: only `engagement` events carry it (this is `{name}`)"
                    )));
                }
            }
            None
        };
        Ok(Payload {
            name,
            url,
            domain: self.domain.filter(|d| !d.trim().is_empty()),
            referrer: self.referrer.filter(|r| !r.is_empty()),
            props: self.props,
            hash_mode: self.hash_mode,
            interactive: self.interactive.unwrap_or(true),
            revenue: self.revenue,
            engagement,
        })
    }
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), ParseError> {
    if value.len() > max {
        return Err(ParseError(format!(
            "`{field}`: longer than {max} bytes ({} bytes)",
            value.len()
        )));
    }
    Ok(())
}

/// A field this API does not have. Rejected rather than skipped: a misspelt `revenue` or
/// `props` would otherwise be accepted and its data silently lost.
fn unknown_field(field: &str, form: &str) -> String {
    format!(
        "unknown field `{}`; {form} takes n, u, d, r, p, h, i{}, sd and e (or name, url, domain, \
         referrer, props or meta, hashMode, interactive), and v and w, which Plausible's \
         scripts send and which are not stored",
        truncate(field, 64),
        if form == JSON_FORM {
            ", revenue ($)"
        } else {
            ""
        },
    )
}

/// `more` properties after those of `props`: `m` and `p` together give both sets, within
/// one limit, and a key in both is given twice.
fn merge_props<'a>(props: &mut PropList<'a>, more: PropList<'a>) -> Result<(), String> {
    if props.is_empty() {
        *props = more;
        return Ok(());
    }
    more.into_iter()
        .try_for_each(|(key, value)| add_prop(props, key, value))
}

/// One more property, within the limit and not given before.
fn add_prop<'a>(
    props: &mut PropList<'a>,
    key: Cow<'a, str>,
    value: Cow<'a, str>,
) -> Result<(), String> {
    if props.len() == MAX_PROPS {
        return Err(format!("at most {MAX_PROPS} properties"));
    }
    if props.iter().any(|(k, _)| *k == key) {
        return Err(format!("`{key}`: property given more than once"));
    }
    props.push((key, value));
    Ok(())
}

/// The payload's fields, whichever of their names a client uses.
#[derive(Clone, Copy)]
enum Field {
    Name,
    Url,
    Domain,
    Referrer,
    Props,
    /// Plausible's legacy script sends `meta` as `m` beside `props` as `p`: a field of its own.
    Meta,
    HashMode,
    Interactive,
    ScrollDepth,
    Engaged,
    Revenue,
    Version,
    ScreenWidth,
}

impl Field {
    fn named(key: &str) -> Option<Field> {
        Some(match key {
            "n" | "name" => Field::Name,
            "u" | "url" => Field::Url,
            "d" | "domain" => Field::Domain,
            "r" | "referrer" => Field::Referrer,
            "p" | "props" => Field::Props,
            "m" | "meta" => Field::Meta,
            "h" | "hashMode" => Field::HashMode,
            "i" | "interactive" => Field::Interactive,
            "sd" => Field::ScrollDepth,
            "e" => Field::Engaged,
            "revenue" | "$" => Field::Revenue,
            "v" => Field::Version,
            "w" | "screen_width" => Field::ScreenWidth,
            _ => return None,
        })
    }

    /// The field `key` names, the first time it is given. Each field at most once, under
    /// either of its names: of two values, one would be dropped without a word. `seen` holds
    /// a bit per field.
    fn once(key: &str, seen: &mut u16, form: &str) -> Result<Field, String> {
        let field = Field::named(key).ok_or_else(|| unknown_field(key, form))?;
        let bit = 1 << field as u16;
        if *seen & bit != 0 {
            return Err(format!(
                "`{key}`: given more than once (or under both of its names)"
            ));
        }
        *seen |= bit;
        Ok(field)
    }
}

const JSON_FORM: &str = "the JSON body";
const QUERY_FORM: &str = "the query string";

fn field_err<E: de::Error>(field: &str, e: impl fmt::Display) -> E {
    E::custom(format!("`{field}`: {e}"))
}

impl<'de: 'a, 'a> Deserialize<'de> for RawPayload<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PayloadVisitor)
    }
}

struct PayloadVisitor;

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = RawPayload<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with at least `n` (event name) and `u` (page URL)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawPayload::default();
        let mut seen = 0;
        // A key borrows from the body: `Cow`'s own deserializer would copy every one.
        while let Some(BorrowedStr(key)) = map.next_key::<BorrowedStr<'de>>()? {
            let field = Field::once(&key, &mut seen, JSON_FORM).map_err(de::Error::custom)?;
            match field {
                Field::Name => raw.name = Some(next_string(&mut map, "n")?),
                Field::Url => raw.url = Some(next_string(&mut map, "u")?),
                Field::Domain => raw.domain = next_opt_string(&mut map, "d")?,
                Field::Referrer => raw.referrer = next_opt_string(&mut map, "r")?,
                Field::Props | Field::Meta => {
                    let props = map
                        .next_value::<Props<'de>>()
                        .map_err(|e| field_err(&key, e))?
                        .0;
                    merge_props(&mut raw.props, props).map_err(|e| field_err(&key, e))?;
                }
                Field::HashMode => {
                    raw.hash_mode = map.next_value::<Flag>().map_err(|e| field_err(&key, e))?.0
                }
                Field::Interactive => {
                    raw.interactive =
                        Some(map.next_value::<Flag>().map_err(|e| field_err(&key, e))?.0);
                }
                Field::ScrollDepth => raw.scroll_depth = next_count(&mut map, "sd")?,
                Field::Engaged => raw.engaged_ms = next_count(&mut map, "e")?,
                Field::Revenue => {
                    raw.revenue = map
                        .next_value::<Option<RevenueIn>>()
                        .map_err(|e| field_err(&key, e))?
                        .map(|r| r.0)
                }
                Field::Version => {
                    map.next_value::<Version>()
                        .map_err(|e| field_err(&key, e))?;
                }
                Field::ScreenWidth => {
                    next_count(&mut map, &key)?;
                }
            }
        }
        Ok(raw)
    }
}

fn next_string<'de, A: MapAccess<'de>>(
    map: &mut A,
    field: &str,
) -> Result<Cow<'de, str>, A::Error> {
    map.next_value::<BorrowedStr<'de>>()
        .map(|s| s.0)
        .map_err(|e| field_err(field, e))
}

/// A non-negative whole number, or null (the official tracker's scroll depth of a page with
/// no height); a fractional one (some clients compute milliseconds from `performance.now()`)
/// is rounded.
fn next_count<'de, A: MapAccess<'de>>(map: &mut A, field: &str) -> Result<Option<u64>, A::Error> {
    let Some(n) = map
        .next_value::<Option<f64>>()
        .map_err(|e| field_err(field, e))?
    else {
        return Ok(None);
    };
    if !n.is_finite() || n < 0.0 {
        return Err(field_err(field, "expected a number of at least 0"));
    }
    Ok(Some(n.round().min(u64::MAX as f64) as u64))
}

fn next_opt_string<'de, A: MapAccess<'de>>(
    map: &mut A,
    field: &str,
) -> Result<Option<Cow<'de, str>>, A::Error> {
    map.next_value::<Option<BorrowedStr<'de>>>()
        .map(|s| s.map(|s| s.0))
        .map_err(|e| field_err(field, e))
}

/// A string that borrows from the input unless it contains escapes.
struct BorrowedStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for BorrowedStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The tracker script's version (`v`), a number or a string; checked, never stored.
struct Version;

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Version;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a version number or string")
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Version, E> {
                Ok(Version)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Version, E> {
                Ok(Version)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Version, E> {
                Ok(Version)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Version, E> {
                Ok(Version)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Version, E> {
                Ok(Version)
            }
        }
        d.deserialize_any(V)
    }
}

/// A boolean that also accepts 0/1, as some clients send numbers.
struct Flag(bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, 0 or 1")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Flag, E> {
                Ok(Flag(v != 0))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Flag, E> {
                Ok(Flag(v != 0))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Flag, E> {
                Ok(Flag(false))
            }
        }
        d.deserialize_any(V)
    }
}

/// Custom properties: a JSON object, or a string holding one (older trackers send that).
struct Props<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Props<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Props<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of string values, or a string holding one")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Props(Vec::new()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_props_string(v).map(Props).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<BorrowedStr<'de>>()? {
                    let key = key.0;
                    let value = map
                        .next_value::<PropValue<'de>>()
                        .map_err(|e| field_err(&key, e))?;
                    let Some(value) = value.0 else { continue };
                    if key.is_empty() || key.len() > MAX_PROP_KEY_LEN {
                        return Err(de::Error::custom(format!(
                            "property names must be 1 to {MAX_PROP_KEY_LEN} bytes"
                        )));
                    }
                    if value.len() > MAX_PROP_VALUE_LEN {
                        return Err(de::Error::custom(format!(
                            "`{key}`: value longer than {MAX_PROP_VALUE_LEN} bytes"
                        )));
                    }
                    add_prop(&mut out, key, value).map_err(de::Error::custom)?;
                }
                Ok(Props(out))
            }
        }
        d.deserialize_any(V)
    }
}

fn parse_props_string(s: &str) -> Result<PropList<'static>, ParseError> {
    if s.trim().is_empty() || s.trim() == "null" {
        return Ok(Vec::new());
    }
    let props: Props<'_> = serde_json::from_str(s).map_err(|e| ParseError(format!("`p`: {e}")))?;
    Ok(props
        .0
        .into_iter()
        .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
        .collect())
}

/// A property value: strings kept, numbers and booleans turned into text, null skipped.
struct PropValue<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for PropValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PropValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(PropValue(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(PropValue(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(PropValue(Some(Cow::Borrowed(if v {
                    "true"
                } else {
                    "false"
                }))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(PropValue(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(PropValue(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(PropValue(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(PropValue(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
                Err(de::Error::custom(
                    "values must be strings, numbers or booleans, not objects",
                ))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
                Err(de::Error::custom(
                    "values must be strings, numbers or booleans, not arrays",
                ))
            }
        }
        d.deserialize_any(V)
    }
}

struct RevenueIn(Revenue);

impl<'de> Deserialize<'de> for RevenueIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw<'a> {
            amount: Amount,
            #[serde(borrow)]
            currency: Cow<'a, str>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Amount {
            Number(f64),
            Text(String),
        }
        let raw = Raw::deserialize(d)?;
        let amount = match raw.amount {
            Amount::Number(n) => n,
            Amount::Text(t) => t
                .trim()
                .parse::<f64>()
                .map_err(|_| de::Error::custom(format!("amount {t:?} is not a number")))?,
        };
        if !amount.is_finite() || amount.abs() >= 1e12 {
            return Err(de::Error::custom(
                "amount must be a finite number below 10^12",
            ));
        }
        let c = raw.currency.as_bytes();
        if c.len() != 3 || !c.iter().all(u8::is_ascii_alphabetic) {
            return Err(de::Error::custom(format!(
                "currency {:?} is not a 3-letter ISO 4217 code",
                raw.currency
            )));
        }
        Ok(RevenueIn(Revenue {
            micros: (amount * 1e6).round() as i64,
            currency: [
                c[0].to_ascii_uppercase(),
                c[1].to_ascii_uppercase(),
                c[2].to_ascii_uppercase(),
            ],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Payload<'_> {
        parse_json(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn err(body: &str) -> String {
        parse_json(body.as_bytes()).unwrap_err().0
    }

    #[test]
    fn short_and_long_names() {
        let a = ok(
            r#"{"n":"pageview","u":"https://a.com/x","d":"a.com","r":"https://b.org/","h":1,"i":false}"#,
        );
        let b = ok(
            r#"{"name":"pageview","url":"https://a.com/x","domain":"a.com","referrer":"https://b.org/","hashMode":true,"interactive":false}"#,
        );
        assert_eq!(a, b);
        assert!(!a.interactive, "\"i\": false must be honoured");
        assert!(a.hash_mode);
        assert!(matches!(a.name, Cow::Borrowed(_)), "no escapes: borrowed");
    }

    #[test]
    fn defaults() {
        let p = ok(r#"{"n":"pageview","u":"https://a.com/"}"#);
        assert!(p.interactive);
        assert!(!p.hash_mode);
        assert_eq!(p.domain, None);
        assert_eq!(p.referrer, None);
        assert!(p.props.is_empty());
        let p = ok(r#"{"n":"pageview","u":"https://a.com/","r":null,"d":"","p":null}"#);
        assert_eq!(p.referrer, None);
        assert_eq!(p.domain, None);
    }

    #[test]
    fn engagement_reports() {
        let p = ok(r#"{"n":"engagement","u":"https://a.com/","d":"a.com","sd":42,"e":3512}"#);
        assert_eq!(
            p.engagement,
            Some(Engagement {
                scroll_depth: 42,
                engaged_ms: 3512
            })
        );
        // Fractions are rounded, a huge engaged time is capped, missing values are 0.
        let p = ok(r#"{"n":"engagement","u":"https://a.com/","sd":99.6,"e":1e12}"#);
        assert_eq!(
            p.engagement,
            Some(Engagement {
                scroll_depth: 100,
                engaged_ms: MAX_ENGAGED_MS
            })
        );
        let p = ok(r#"{"n":"engagement","u":"https://a.com/"}"#);
        assert_eq!(p.engagement, Some(Engagement::default()));
        // What the official tracker sends for a page that shrank, or has no height.
        let p = ok(r#"{"n":"engagement","u":"https://a.com/","sd":180,"e":0,"v":29}"#);
        assert_eq!(p.engagement.unwrap().scroll_depth, 100);
        let p = ok(r#"{"n":"engagement","u":"https://a.com/","sd":null,"e":10}"#);
        assert_eq!(p.engagement.unwrap().scroll_depth, 0);
        assert_eq!(
            ok(r#"{"n":"pageview","u":"https://a.com/"}"#).engagement,
            None
        );
        // The pixel's query string reads them the same way.
        let p = parse_query("n=engagement&u=https%3A%2F%2Fa.com%2F&sd=40&e=1200").unwrap();
        assert_eq!(
            p.engagement,
            Some(Engagement {
                scroll_depth: 40,
                engaged_ms: 1200
            })
        );
        assert!(
            parse_query("n=engagement&u=x&sd=deep")
                .unwrap_err()
                .0
                .starts_with("`sd`")
        );
        assert!(
            parse_query("n=pageview&u=x&e=5")
                .unwrap_err()
                .0
                .starts_with("`e`")
        );
        for (body, want) in [
            (
                r#"{"n":"engagement","u":"https://a.com/","sd":-1}"#,
                "`sd`: expected a number",
            ),
            (
                r#"{"n":"engagement","u":"https://a.com/","e":"5"}"#,
                "`e`: invalid type",
            ),
            (
                r#"{"n":"pageview","u":"https://a.com/","e":5}"#,
                "`e`: only `engagement` events",
            ),
        ] {
            assert!(err(body).starts_with(want), "{body}: {}", err(body));
        }
    }

    #[test]
    fn props_as_object_or_string() {
        let a = ok(
            r#"{"n":"Signup","u":"https://a.com/","p":{"plan":"pro","seats":3,"trial":true,"x":null}}"#,
        );
        let b = ok(
            r#"{"n":"Signup","u":"https://a.com/","m":"{\"plan\":\"pro\",\"seats\":3,\"trial\":true}"}"#,
        );
        let want = vec![
            ("plan".into(), "pro".into()),
            ("seats".into(), "3".into()),
            ("trial".into(), "true".into()),
        ];
        assert_eq!(a.props, want);
        assert_eq!(b.props, want);
    }

    #[test]
    fn revenue() {
        let p = ok(
            r#"{"n":"Purchase","u":"https://a.com/","revenue":{"amount":9.99,"currency":"eur"}}"#,
        );
        assert_eq!(
            p.revenue,
            Some(Revenue {
                micros: 9_990_000,
                currency: *b"EUR"
            })
        );
        let p = ok(
            r#"{"n":"Purchase","u":"https://a.com/","revenue":{"amount":"1322.22","currency":"USD"}}"#,
        );
        assert_eq!(p.revenue.unwrap().micros, 1_322_220_000);
        assert!(
            err(r#"{"n":"P","u":"https://a.com/","revenue":{"amount":1,"currency":"EURO"}}"#)
                .contains("`revenue`")
        );
        assert!(
            err(r#"{"n":"P","u":"https://a.com/","revenue":{"amount":1e300,"currency":"EUR"}}"#)
                .contains("finite")
        );
    }

    #[test]
    fn clear_errors() {
        assert!(err("").contains("empty body"));
        assert!(err("{").contains("not valid JSON"));
        assert!(err("[1,2]").contains("JSON object"));
        assert!(err(r#"{"u":"https://a.com/"}"#).contains("missing field `n`"));
        assert!(err(r#"{"n":"pageview"}"#).contains("missing field `u`"));
        assert!(err(r#"{"n":5,"u":"x"}"#).contains("`n`: invalid type"));
        assert!(err(r#"{"n":"a","u":"x","i":"yes"}"#).contains("`i`"));
        assert!(err(r#"{"n":"a","u":"x","p":{"a":{"b":1}}}"#).contains("not objects"));
        assert!(err(r#"{"n":"a","u":"x","p":{"a":[1]}}"#).contains("not arrays"));
        assert!(err(r#"{"n":"","u":"x"}"#).contains("must not be empty"));
        let long = "x".repeat(MAX_URL_LEN + 1);
        assert!(err(&format!(r#"{{"n":"a","u":"{long}"}}"#)).contains("longer than"));
    }

    #[test]
    fn too_many_props_and_deep_nesting() {
        let props: Vec<String> = (0..31).map(|i| format!("\"k{i}\":\"v\"")).collect();
        let body = format!(r#"{{"n":"a","u":"x","p":{{{}}}}}"#, props.join(","));
        assert!(err(&body).contains("at most 30"));
        // Nesting never recurses in our code: an unknown field is refused at its name, and
        // known fields reject a nested value at its first level.
        let open = "[".repeat(100_000);
        let close = "]".repeat(100_000);
        assert!(err(&format!(r#"{{"n":"a","u":"x","zz":{open}{close}}}"#)).contains("`zz`"));
        assert!(err(&format!(r#"{{"n":"a","u":"x","v":{open}{close}}}"#)).contains("`v`"));
        assert!(
            err(&format!(r#"{{"n":"a","u":"x","p":{{"k":{open}{close}}}}}"#))
                .contains("not arrays")
        );
        assert!(err(&format!(r#"{{"n":{open}{close},"u":"x"}}"#)).contains("`n`"));
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        for body in [
            r#"{"n":"pageview","u":"https://a.com/","revnue":{"amount":1,"currency":"EUR"}}"#,
            r#"{"n":"pageview","u":"https://a.com/","prop":{"a":"b"}}"#,
            r#"{"n":"pageview","u":"https://a.com/","N":"x"}"#,
        ] {
            let e = err(body);
            assert!(e.starts_with("unknown field `"), "{body}: {e}");
            assert!(e.contains("revenue"), "the message lists the fields: {e}");
        }
        assert!(err(r#"{"n":"a","u":"x","revnue":1}"#).contains("`revnue`"));
        let long = "k".repeat(500);
        let e = err(&format!(r#"{{"n":"a","u":"x","{long}":1}}"#));
        assert!(e.len() < 400, "the echoed name is cut: {e}");
        // What Plausible's scripts send besides: the script version, and the screen width of
        // older versions. Checked, not stored.
        for body in [
            r#"{"n":"pageview","u":"https://a.com/","v":36}"#,
            r#"{"n":"pageview","u":"https://a.com/","v":"1.0.0"}"#,
            r#"{"n":"pageview","u":"https://a.com/","w":1280}"#,
            r#"{"n":"pageview","u":"https://a.com/","screen_width":1280.5}"#,
        ] {
            assert_eq!(
                ok(body),
                ok(r#"{"n":"pageview","u":"https://a.com/"}"#),
                "{body}"
            );
        }
        assert!(err(r#"{"n":"a","u":"x","w":-1}"#).contains("`w`"));
        assert!(err(r#"{"n":"a","u":"x","v":{}}"#).contains("`v`"));
        // The query-string form the same way (it has no revenue).
        let q = parse_query("n=pageview&u=https%3A%2F%2Fa.com%2F&utm_source=x").unwrap_err();
        assert!(
            q.0.contains("`utm_source`") && !q.0.contains("revenue"),
            "{}",
            q.0
        );
        assert!(parse_query("n=pageview&u=https%3A%2F%2Fa.com%2F&revenue=1").is_err());
        assert!(parse_query("n=pageview&u=https%3A%2F%2Fa.com%2F&v=36&w=1280").is_ok());
        assert!(parse_query("n=pageview&u=https%3A%2F%2Fa.com%2F&w=wide").is_err());
    }

    #[test]
    fn a_field_given_twice_is_refused() {
        for body in [
            r#"{"n":"pageview","u":"https://a.com/","u":"https://b.com/"}"#,
            r#"{"n":"pageview","url":"https://a.com/","u":"https://b.com/"}"#,
            r#"{"n":"pageview","u":"https://a.com/","p":{"a":"1"},"props":{"b":"2"}}"#,
            r#"{"n":"pageview","u":"https://a.com/","m":{"a":"1"},"meta":{"b":"2"}}"#,
        ] {
            assert!(err(body).contains("more than once"), "{body}");
        }
        let q = parse_query("n=pageview&u=https%3A%2F%2Fa.com%2F&n=signup").unwrap_err();
        assert!(q.0.starts_with("`n`: given more than once"), "{}", q.0);
        // `m` (meta) beside `p`, as Plausible's legacy script sends them: both sets, within one
        // limit, and a key in both is given twice.
        let both =
            ok(r#"{"n":"Signup","u":"https://a.com/","m":"{\"plan\":\"pro\"}","p":{"via":"ad"}}"#);
        assert_eq!(both.props.len(), 2);
        let body = r#"{"n":"e","u":"https://a.com/","m":{"a":"1"},"p":{"a":"2"}}"#;
        assert!(
            err(body).contains("`a`: property given more than once"),
            "{}",
            err(body)
        );
        let many = |from: usize| -> String {
            let kv: Vec<String> = (from..from + 20)
                .map(|i| format!("\"k{i}\":\"v\""))
                .collect();
            format!("{{{}}}", kv.join(","))
        };
        let body = format!(
            r#"{{"n":"e","u":"https://a.com/","m":{},"p":{}}}"#,
            many(0),
            many(20)
        );
        assert!(err(&body).contains("at most 30"), "{}", err(&body));
        // A property, too.
        let body = r#"{"n":"pageview","u":"https://a.com/","p":{"a":"1","b":"2","a":"3"}}"#;
        assert!(err(body).contains("`a`: property given more than once"));
        let q = parse_query(r#"n=pageview&u=https%3A%2F%2Fa.com%2F&p={"a":1,"a":2}"#).unwrap_err();
        assert!(q.0.contains("more than once"), "{}", q.0);
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let body = b"{\"n\":\"a\xff\",\"u\":\"x\"}";
        assert!(parse_json(body).is_err());
    }

    #[test]
    fn query_string_form() {
        let p = parse_query("n=pageview&u=https%3A%2F%2Fa.com%2Fx%3Fq%3D1&d=a.com&r=&i=0").unwrap();
        assert_eq!(p.url, "https://a.com/x?q=1");
        assert_eq!(p.referrer, None);
        assert!(!p.interactive);
        assert!(parse_query("u=x").unwrap_err().0.contains("`n`"));
        let p = parse_query_with_defaults("d=a.com", Some("https://a.com/page")).unwrap();
        assert_eq!((&*p.name, &*p.url), ("pageview", "https://a.com/page"));
        assert!(
            parse_query_with_defaults("d=a.com", None)
                .unwrap_err()
                .0
                .contains("`u`")
        );
    }
}
