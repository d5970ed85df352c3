//! MQTT topic filters (`+` one level, `#` the rest): one implementation for the rules'
//! subscriptions, the edge's subscriptions, the set of every subscribed filter that lets
//! the edge keep publishes nobody can receive away from the router, and the index of the
//! cluster's sessions by their subscriptions.

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

    /// Whether the filter has no wildcard: it matches its own text only.
    pub fn is_exact(&self) -> bool {
        self.levels.iter().all(|level| matches!(level, Level::Exact(_)))
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

/// Filters, each with the values subscribed under it, that finds the values of every
/// filter matching a topic in time proportional to the topic's levels, whatever the
/// number of filters (every lock's command filter is in it). A value inserted twice
/// under a filter is there twice, and found twice.
#[derive(Debug)]
pub struct FilterIndex<V> {
    /// Filters without wildcards, by their text: one map entry each, where a tree would
    /// cost a node (and its map) per level of every lock's own filter.
    exact: HashMap<Box<str>, Vec<V>>,
    /// Filters with wildcards, level by level.
    root: Node<V>,
}

/// The set of subscribed filters, each counted as often as it is subscribed.
pub type FilterSet = FilterIndex<()>;

#[derive(Debug)]
struct Node<V> {
    exact: HashMap<Box<str>, Node<V>>,
    one: Option<Box<Node<V>>>,
    /// Values of the filters ending here with `#`.
    rest: Vec<V>,
    /// Values of the filters ending here.
    here: Vec<V>,
}

impl<V> Default for FilterIndex<V> {
    fn default() -> Self {
        FilterIndex { exact: HashMap::new(), root: Node::default() }
    }
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node { exact: HashMap::new(), one: None, rest: Vec::new(), here: Vec::new() }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.one.is_none() && self.rest.is_empty() && self.here.is_empty()
    }
}

impl<V> FilterIndex<V> {
    pub fn insert(&mut self, filter: &TopicFilter, value: V) {
        if filter.is_exact() {
            let values = self.exact.entry(filter.as_str().into()).or_default();
            // Most exact filters have one subscriber (a lock's own topic).
            if values.is_empty() {
                values.reserve_exact(1);
            }
            values.push(value);
            return;
        }
        let mut node = &mut self.root;
        for level in &filter.levels {
            node = match level {
                Level::Exact(part) => node.exact.entry(part.as_str().into()).or_default(),
                Level::One => node.one.get_or_insert_with(Default::default),
                Level::Rest => {
                    node.rest.push(value);
                    return;
                }
            };
        }
        node.here.push(value);
    }

    /// Removes one occurrence of `value` under `filter`; whether there was one.
    pub fn remove(&mut self, filter: &TopicFilter, value: &V) -> bool
    where
        V: PartialEq,
    {
        fn take<V: PartialEq>(values: &mut Vec<V>, value: &V) -> bool {
            let at = values.iter().position(|v| v == value);
            at.map(|at| values.swap_remove(at)).is_some()
        }
        if filter.is_exact() {
            let Some(values) = self.exact.get_mut(filter.as_str()) else { return false };
            let removed = take(values, value);
            if values.is_empty() {
                self.exact.remove(filter.as_str());
            }
            return removed;
        }
        fn remove<V: PartialEq>(node: &mut Node<V>, levels: &[Level], value: &V) -> bool {
            match levels.split_first() {
                None => take(&mut node.here, value),
                Some((Level::Rest, _)) => take(&mut node.rest, value),
                Some((Level::One, rest)) => {
                    let Some(child) = node.one.as_mut() else { return false };
                    let removed = remove(child, rest, value);
                    if child.is_empty() {
                        node.one = None;
                    }
                    removed
                }
                Some((Level::Exact(part), rest)) => {
                    let Some(child) = node.exact.get_mut(part.as_str()) else { return false };
                    let removed = remove(child, rest, value);
                    if child.is_empty() {
                        node.exact.remove(part.as_str());
                    }
                    removed
                }
            }
        }
        remove(&mut self.root, &filter.levels, value)
    }

    /// Calls `found` with the value of every filter matching `topic` (by the rules of
    /// `TopicFilter::matches`) until it returns true, and says whether it did. A value
    /// under two matching filters is found twice.
    pub fn find<'a>(&'a self, topic: &[u8], mut found: impl FnMut(&'a V) -> bool) -> bool {
        fn walk<'a, V>(node: &'a Node<V>, topic: &[u8], wildcards: bool, found: &mut dyn FnMut(&'a V) -> bool) -> bool {
            if wildcards && node.rest.iter().any(&mut *found) {
                return true;
            }
            let (part, rest) = match topic.iter().position(|&b| b == b'/') {
                Some(at) => (&topic[..at], Some(&topic[at + 1..])),
                None => (topic, None),
            };
            let mut next = |child: &'a Node<V>| match rest {
                Some(rest) => walk(child, rest, true, found),
                // `a/#` matches `a` too.
                None => child.here.iter().chain(&child.rest).any(&mut *found),
            };
            let exact = std::str::from_utf8(part).ok().and_then(|p| node.exact.get(p));
            exact.is_some_and(&mut next) || (wildcards && node.one.as_deref().is_some_and(next))
        }
        if topic.is_empty() {
            return false;
        }
        let exact = std::str::from_utf8(topic).ok().and_then(|t| self.exact.get(t));
        exact.is_some_and(|values| values.iter().any(&mut found)) || walk(&self.root, topic, topic[0] != b'$', &mut found)
    }

    /// Whether any filter in the index matches `topic`.
    pub fn matches(&self, topic: &[u8]) -> bool {
        self.find(topic, |_| true)
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
                set.insert(filter, ());
            }
            for topic in topics {
                let want = parsed.iter().any(|f| f.matches(topic.as_bytes()));
                assert_eq!(set.matches(topic.as_bytes()), want, "filters {:?}, topic {topic}", &filters[..=n]);
            }
        }
    }

    #[test]
    fn an_index_finds_the_value_of_every_matching_filter() {
        let filters = ["devices/+/command", "devices/#", "a/b", "+/x/#", "#", "$SYS/#", "s/+", "devices/+/command", "+"];
        let topics = ["devices/1/command", "devices", "a/b", "a/b/c", "q/x", "$SYS/x", "s/t", "x", "/", "devices/1/command/x"];
        let parsed: Vec<TopicFilter> = filters.iter().map(|f| TopicFilter::parse(f).unwrap()).collect();
        let mut index = FilterIndex::default();
        for (value, filter) in parsed.iter().enumerate() {
            index.insert(filter, value);
        }
        for topic in topics {
            let mut found = Vec::new();
            index.find(topic.as_bytes(), |value| {
                found.push(*value);
                false
            });
            found.sort();
            let want: Vec<usize> = (0..parsed.len()).filter(|&v| parsed[v].matches(topic.as_bytes())).collect();
            assert_eq!(found, want, "topic {topic}");
        }
        assert!(index.remove(&parsed[0], &0));
        assert!(!index.remove(&parsed[0], &0), "value 0 is gone; its twin filter keeps value 7");
        let mut found = Vec::new();
        index.find(b"devices/1/command", |value| {
            found.push(*value);
            false
        });
        found.sort();
        assert_eq!(found, [1, 4, 7]);
    }

    #[test]
    fn a_removed_filter_no_longer_matches_but_its_twin_still_does() {
        let mut set = FilterSet::default();
        let filter = TopicFilter::parse("devices/+/command").unwrap();
        set.insert(&filter, ());
        set.insert(&filter, ());
        assert!(set.remove(&filter, &()));
        assert!(set.matches(b"devices/1/command"));
        assert!(set.remove(&filter, &()));
        assert!(!set.remove(&filter, &()), "no third one");
        assert!(!set.matches(b"devices/1/command"));
        assert!(set.root.is_empty() && set.exact.is_empty());
        let exact = TopicFilter::parse("devices/1/command").unwrap();
        set.insert(&exact, ());
        assert!(set.matches(b"devices/1/command") && !set.matches(b"devices/2/command"));
        assert!(set.remove(&exact, &()));
        assert!(set.exact.is_empty());
    }
}
