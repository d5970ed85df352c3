//! MQTT topic filters (`+` one level, `#` the rest): one implementation for the rules'
//! subscriptions, the edge's subscriptions, and the set of every subscribed filter that
//! lets the edge keep publishes nobody can receive away from the router.

use std::collections::HashMap;

/// A validated topic filter, split into levels once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter {
    text: String,
    levels: Vec<Level>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Exact(String),
    One,
    Rest,
}

impl TopicFilter {
    /// Parses a filter; `None` when it breaks MQTT's rules (`#` not last or not alone in
    /// its level, `+` sharing a level, empty filter).
    pub fn parse(text: &str) -> Option<TopicFilter> {
        if text.is_empty() || text.contains('\0') {
            return None;
        }
        let parts: Vec<&str> = text.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let level = match *part {
                "#" if i == parts.len() - 1 => Level::Rest,
                "+" => Level::One,
                p if p.contains('#') || p.contains('+') => return None,
                p => Level::Exact(p.to_string()),
            };
            levels.push(level);
        }
        Some(TopicFilter { text: text.to_string(), levels })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `topic` matches. Topics starting with `$` match no leading wildcard, as
    /// MQTT requires; the empty topic (client events) matches only `#`.
    pub fn matches(&self, topic: &[u8]) -> bool {
        if topic.is_empty() {
            return self.levels == [Level::Rest];
        }
        if topic.first() == Some(&b'$') && !matches!(self.levels.first(), Some(Level::Exact(_))) {
            return false;
        }
        let mut parts = topic.split(|b| *b == b'/');
        for level in &self.levels {
            match level {
                Level::Rest => return true,
                Level::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Level::Exact(want) => match parts.next() {
                    Some(part) if part == want.as_bytes() => {}
                    _ => return false,
                },
            }
        }
        parts.next().is_none()
    }
}

/// A multiset of filters that answers "does any of them match this topic" in time
/// proportional to the topic's levels, whatever the number of filters (every lock's
/// command filter is in it).
#[derive(Debug, Default)]
pub struct FilterSet {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    exact: HashMap<Box<str>, Node>,
    one: Option<Box<Node>>,
    /// Filters ending here with `#`.
    rest: usize,
    /// Filters ending here.
    here: usize,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.one.is_none() && self.rest == 0 && self.here == 0
    }
}

impl FilterSet {
    pub fn insert(&mut self, filter: &TopicFilter) {
        let mut node = &mut self.root;
        for level in &filter.levels {
            node = match level {
                Level::Exact(part) => node.exact.entry(part.as_str().into()).or_default(),
                Level::One => node.one.get_or_insert_with(Default::default),
                Level::Rest => {
                    node.rest += 1;
                    return;
                }
            };
        }
        node.here += 1;
    }

    /// Removes one occurrence of `filter`; a filter not in the set is ignored.
    pub fn remove(&mut self, filter: &TopicFilter) {
        fn remove(node: &mut Node, levels: &[Level]) {
            match levels.split_first() {
                None => node.here = node.here.saturating_sub(1),
                Some((Level::Rest, _)) => node.rest = node.rest.saturating_sub(1),
                Some((Level::One, rest)) => {
                    if let Some(child) = node.one.as_mut() {
                        remove(child, rest);
                        if child.is_empty() {
                            node.one = None;
                        }
                    }
                }
                Some((Level::Exact(part), rest)) => {
                    if let Some(child) = node.exact.get_mut(part.as_str()) {
                        remove(child, rest);
                        if child.is_empty() {
                            node.exact.remove(part.as_str());
                        }
                    }
                }
            }
        }
        remove(&mut self.root, &filter.levels);
    }

    /// Whether any filter in the set matches `topic`, by the rules of
    /// `TopicFilter::matches`.
    pub fn matches(&self, topic: &[u8]) -> bool {
        fn walk(node: &Node, topic: &[u8], wildcards: bool) -> bool {
            if wildcards && node.rest > 0 {
                return true;
            }
            let (part, rest) = match topic.iter().position(|&b| b == b'/') {
                Some(at) => (&topic[..at], Some(&topic[at + 1..])),
                None => (topic, None),
            };
            let next = |child: &Node| match rest {
                Some(rest) => walk(child, rest, true),
                None => child.here > 0 || child.rest > 0,
            };
            let exact = std::str::from_utf8(part).ok().and_then(|p| node.exact.get(p));
            exact.is_some_and(next) || (wildcards && node.one.as_deref().is_some_and(next))
        }
        !topic.is_empty() && walk(&self.root, topic, topic[0] != b'$')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(filter: &str, topic: &str) -> bool {
        TopicFilter::parse(filter).unwrap().matches(topic.as_bytes())
    }

    #[test]
    fn single_level_wildcard() {
        assert!(matches("devices/+/state", "devices/1008/state"));
        assert!(!matches("devices/+/state", "devices/1008/command"));
        assert!(!matches("devices/+/state", "devices/1008/state/x"));
        assert!(!matches("devices/+/state", "devices/state"));
    }

    #[test]
    fn multi_level_wildcard() {
        assert!(matches("devices/#", "devices/1/state"));
        assert!(matches("devices/#", "devices"));
        assert!(matches("#", "a/b"));
        assert!(matches("#", ""));
        assert!(!matches("devices/+", ""));
    }

    #[test]
    fn dollar_topics_need_explicit_first_level() {
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
    }

    #[test]
    fn invalid_filters_are_refused() {
        for bad in ["", "a/#/b", "a/b#", "a+/b", "a/\0"] {
            assert!(TopicFilter::parse(bad).is_none(), "{bad:?}");
        }
    }
    #[test]
    fn a_filter_set_answers_as_its_filters_would() {
        let filters = ["devices/+/command", "devices/#", "a/b", "+/x/#", "#", "$SYS/#", "s/+"];
        let topics = ["devices/1/command", "devices", "a/b", "a/b/c", "q/x", "q/x/y/z", "$SYS/x", "$SYS", "s", "s/t", "s/t/u", "x"];
        for n in 0..filters.len() {
            let mut set = FilterSet::default();
            let parsed: Vec<TopicFilter> = filters[..=n].iter().map(|f| TopicFilter::parse(f).unwrap()).collect();
            for filter in &parsed {
                set.insert(filter);
            }
            for topic in topics {
                let want = parsed.iter().any(|f| f.matches(topic.as_bytes()));
                assert_eq!(set.matches(topic.as_bytes()), want, "filters {:?}, topic {topic}", &filters[..=n]);
            }
        }
    }

    #[test]
    fn a_removed_filter_no_longer_matches_but_its_twin_still_does() {
        let mut set = FilterSet::default();
        let filter = TopicFilter::parse("devices/+/command").unwrap();
        set.insert(&filter);
        set.insert(&filter);
        set.remove(&filter);
        assert!(set.matches(b"devices/1/command"));
        set.remove(&filter);
        assert!(!set.matches(b"devices/1/command"));
        assert!(set.root.is_empty());
    }
}
