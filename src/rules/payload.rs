//! Payload fields for rules (`payload_f64`, `payload_bool`, `payload_str`,
//! `payload_json`): the host parses the current event's payload (the MQTT payload, or
//! the consumed record's value) as JSON once, at the first lookup, and answers lookups
//! by path (`battery`, `lock.state`, `readings[0]`) with the value's JSON text exactly
//! as it came, which the host functions then read as a number, a bool, a string or raw
//! text. Raw text, not a parsed number: a huge integer keeps every digit for a rule that
//! reads it as text.

use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::value::RawValue;

/// Why a lookup found no value of the kind asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// The path is not `name`, `[index]` or a chain of them (`lock.state`, `a[0].b`).
    BadPath,
    /// The payload has no member or element there.
    NoSuchField,
    /// The value there is not of the kind asked for.
    WrongType,
    /// The payload is not JSON (or nests deeper than 128 levels).
    NotJson,
}

/// One value of the payload: where its text is, and what it holds.
#[derive(Debug)]
struct Node {
    text: Range<usize>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// Members by name; a name given twice keeps its last value, as JavaScript does.
    Object(BTreeMap<String, Node>),
    Array(Vec<Node>),
    Scalar,
}

/// A payload parsed for lookups: its values as ranges of its text.
#[derive(Debug)]
pub struct ParsedPayload(Result<Node, FieldError>);

impl ParsedPayload {
    pub fn parse(payload: &[u8]) -> ParsedPayload {
        let root = serde_json::from_slice::<&RawValue>(payload).ok().and_then(|raw| node(payload, raw, 0));
        ParsedPayload(root.ok_or(FieldError::NotJson))
    }

    /// The JSON text of the value at `path` in `payload` (the bytes this was parsed from).
    pub fn lookup<'a>(&self, payload: &'a [u8], path: &str) -> Result<&'a str, FieldError> {
        let mut node = self.0.as_ref().map_err(|e| *e)?;
        for step in steps(path)? {
            node = match (&node.kind, step) {
                (Kind::Object(members), Step::Member(name)) => members.get(name),
                (Kind::Array(elements), Step::Index(index)) => elements.get(index),
                _ => None,
            }
            .ok_or(FieldError::NoSuchField)?;
        }
        std::str::from_utf8(&payload[node.text.clone()]).map_err(|_| FieldError::NotJson)
    }
}

/// How deep values may nest: deeper ones make the payload "not JSON" to rules, and keep
/// the recursion below bounded whatever a client sends.
const MAX_DEPTH: usize = 128;

/// The node of `raw`, a value inside `payload` (serde_json checked its syntax) at
/// `depth`; `None` when it nests deeper than `MAX_DEPTH`.
fn node(payload: &[u8], raw: &RawValue, depth: usize) -> Option<Node> {
    if depth > MAX_DEPTH {
        return None;
    }
    let text = raw.get();
    let start = (text.as_ptr() as usize).checked_sub(payload.as_ptr() as usize)?;
    let kind = match text.as_bytes().first()? {
        b'{' => {
            let members: BTreeMap<String, &RawValue> = serde_json::from_str(text).ok()?;
            Kind::Object(members.into_iter().map(|(name, raw)| Some((name, node(payload, raw, depth + 1)?))).collect::<Option<_>>()?)
        }
        b'[' => {
            let elements: Vec<&RawValue> = serde_json::from_str(text).ok()?;
            Kind::Array(elements.into_iter().map(|raw| node(payload, raw, depth + 1)).collect::<Option<_>>()?)
        }
        _ => Kind::Scalar,
    };
    Some(Node { text: start..start + text.len(), kind })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step<'a> {
    Member(&'a str),
    Index(usize),
}

/// The steps of a path: names separated by `.`, indexes in `[]`; the empty path is the
/// whole payload.
fn steps(path: &str) -> Result<Vec<Step<'_>>, FieldError> {
    let mut steps = Vec::new();
    let mut rest = path;
    let mut first = true;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let (digits, after) = after.split_once(']').ok_or(FieldError::BadPath)?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FieldError::BadPath);
            }
            steps.push(Step::Index(digits.parse().map_err(|_| FieldError::BadPath)?));
            rest = after;
        } else {
            let name = match first {
                true => rest,
                false => rest.strip_prefix('.').ok_or(FieldError::BadPath)?,
            };
            let end = name.find(['.', '[']).unwrap_or(name.len());
            if end == 0 {
                return Err(FieldError::BadPath);
            }
            steps.push(Step::Member(&name[..end]));
            rest = &name[end..];
        }
        first = false;
    }
    Ok(steps)
}

/// A JSON number as an f64 (beyond f64's range: ±infinity); `WrongType` for any other
/// value.
pub fn number(text: &str) -> Result<f64, FieldError> {
    match text.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => text.parse().map_err(|_| FieldError::WrongType),
        _ => Err(FieldError::WrongType),
    }
}

/// `true` or `false`; `WrongType` for any other value.
pub fn boolean(text: &str) -> Result<bool, FieldError> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(FieldError::WrongType),
    }
}

/// A JSON string's text, unescaped; `WrongType` for any other value.
pub fn string(text: &str) -> Result<String, FieldError> {
    match text.starts_with('"') {
        true => serde_json::from_str(text).map_err(|_| FieldError::WrongType),
        false => Err(FieldError::WrongType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(payload: &str, path: &str) -> Result<String, FieldError> {
        ParsedPayload::parse(payload.as_bytes()).lookup(payload.as_bytes(), path).map(str::to_string)
    }

    #[test]
    fn paths_reach_members_elements_and_the_whole_payload() {
        let payload = r#" {"battery": 17.5, "lock": {"state": "locked", "ok": true}, "readings": [3, [4, {"x": null}]]} "#;
        assert_eq!(look(payload, "battery").as_deref(), Ok("17.5"));
        assert_eq!(look(payload, "lock.state").as_deref(), Ok(r#""locked""#));
        assert_eq!(look(payload, "lock").as_deref(), Ok(r#"{"state": "locked", "ok": true}"#));
        assert_eq!(look(payload, "readings[0]").as_deref(), Ok("3"));
        assert_eq!(look(payload, "readings[1][1].x").as_deref(), Ok("null"));
        assert_eq!(look("[1,2]", "[1]").as_deref(), Ok("2"));
        assert_eq!(look(" 42 ", "").as_deref(), Ok("42"));
    }

    #[test]
    fn each_failure_says_what_went_wrong() {
        let payload = r#"{"battery": 17, "list": [1]}"#;
        assert_eq!(look(payload, "voltage"), Err(FieldError::NoSuchField));
        assert_eq!(look(payload, "battery.level"), Err(FieldError::NoSuchField));
        assert_eq!(look(payload, "list[1]"), Err(FieldError::NoSuchField));
        assert_eq!(look(payload, "list.x"), Err(FieldError::NoSuchField));
        for bad in ["a..b", ".a", "a.", "a[", "a[]", "a[x]", "a[-1]", "a]"] {
            let expected = if bad == "a]" { FieldError::NoSuchField } else { FieldError::BadPath };
            assert_eq!(look(payload, bad), Err(expected), "{bad:?}");
        }
        for not_json in ["", "{", "battery=17", "{\"a\":1} trailing", "\u{0}"] {
            assert_eq!(look(not_json, "a"), Err(FieldError::NotJson), "{not_json:?}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(look(&deep, ""), Err(FieldError::NotJson), "deeper than 128 levels");
        // A packet's worth of nesting: refused, not a stack overflow.
        let deepest = format!("{}{}", "[".repeat(500_000), "]".repeat(500_000));
        assert_eq!(look(&deepest, ""), Err(FieldError::NotJson));
        let deep_enough = format!("{}7{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(look(&deep_enough, &"[0]".repeat(100)).as_deref(), Ok("7"));
    }

    #[test]
    fn values_read_as_numbers_bools_and_strings_only_when_they_are() {
        assert_eq!(number("17.5"), Ok(17.5));
        assert_eq!(number("-3e2"), Ok(-300.0));
        assert_eq!(number("123456789012345678901234567890"), Ok(1.2345678901234568e29));
        assert_eq!(number("1e400"), Ok(f64::INFINITY));
        assert_eq!(number(r#""17""#), Err(FieldError::WrongType));
        assert_eq!(number("null"), Err(FieldError::WrongType));
        assert_eq!(boolean("true"), Ok(true));
        assert_eq!(boolean("1"), Err(FieldError::WrongType));
        assert_eq!(string(r#""a\"b\u00e9""#).as_deref(), Ok("a\"bé"));
        assert_eq!(string("17"), Err(FieldError::WrongType));
        // A huge number keeps its digits as text.
        let payload = r#"{"id": 123456789012345678901234567890}"#;
        assert_eq!(look(payload, "id").as_deref(), Ok("123456789012345678901234567890"));
        // A name given twice keeps its last value.
        assert_eq!(look(r#"{"a": 1, "a": 2}"#, "a").as_deref(), Ok("2"));
    }
}
