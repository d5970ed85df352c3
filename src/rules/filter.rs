//! MQTT topic filters (`+` one level, `#` the rest), as rules subscribe with them.

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
        Some(TopicFilter {
            text: text.to_string(),
            levels,
        })
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
}
