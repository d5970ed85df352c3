//! Topic access control: which client may publish or subscribe where.
//!
//! File format, one rule a line (`#` starts a comment line), first match wins,
//! everything else denied:
//!
//! ```text
//! # verdict  who               action     topic filter
//! allow      user business-app publish    devices/+/command
//! allow      all               publish    devices/%c/state
//! allow      all               subscribe  devices/%c/command
//! deny       all               all        #
//! ```
//!
//! `who` is `all`, `user <name>` or `client <id>`; `action` is `publish`, `subscribe` or
//! `all`. In the topic filter a whole level `%c` stands for the client id and `%u` for the
//! username; an id or name that contains `/`, `+` or `#` never matches a placeholder, so
//! a client cannot widen its own rights by choosing its id.
//!
//! A publish is allowed when its topic matches the rule's filter. A subscription is
//! allowed when every topic its filter can match is matched by the rule's filter.

use std::path::Path;

use crate::names::reserved;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    All,
    User(String),
    Client(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Exact(String),
    One,
    Rest,
    ClientId,
    Username,
}

#[derive(Debug, Clone)]
struct AclRule {
    allow: bool,
    who: Who,
    actions: Option<Action>,
    filter: Vec<Level>,
}

/// A parsed access-control list.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<AclRule>,
}

impl Acl {
    pub fn from_file(path: &Path) -> Result<Acl, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read ACL file {}: {e}", path.display()))?;
        Acl::parse(&text).map_err(|e| format!("ACL file {}: {e}", path.display()))
    }

    /// Parses the text; errors name the line and what was expected there.
    pub fn parse(text: &str) -> Result<Acl, String> {
        let mut rules = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let rule = parse_rule(line)
                .map_err(|e| format!("line {}: {e} (expected `allow|deny all|user NAME|client ID publish|subscribe|all FILTER`)", n + 1))?;
            rules.push(rule);
        }
        Ok(Acl { rules })
    }

    /// Whether `client_id` / `username` may `action` on `topic` (a topic for publish, a
    /// filter for subscribe). No matching rule: denied.
    pub fn allows(&self, action: Action, client_id: &str, username: &str, topic: &str) -> bool {
        if reserved(topic) {
            return false;
        }
        self.rules
            .iter()
            .find(|rule| {
                rule.actions.is_none_or(|a| a == action)
                    && match &rule.who {
                        Who::All => true,
                        Who::User(name) => name == username,
                        Who::Client(id) => id == client_id,
                    }
                    && covers(&rule.filter, topic, client_id, username, action)
            })
            .is_some_and(|rule| rule.allow)
    }
}

fn parse_rule(line: &str) -> Result<AclRule, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let allow = match words.first() {
        Some(&"allow") => true,
        Some(&"deny") => false,
        other => return Err(format!("verdict {other:?} is not allow or deny")),
    };
    let (who, rest) = match words.get(1) {
        Some(&"all") => (Who::All, &words[2..]),
        Some(&"user") => (Who::User(words.get(2).ok_or("`user` needs a name")?.to_string()), words.get(3..).unwrap_or_default()),
        Some(&"client") => (Who::Client(words.get(2).ok_or("`client` needs an id")?.to_string()), words.get(3..).unwrap_or_default()),
        other => return Err(format!("who {other:?} is not all, user or client")),
    };
    let actions = match rest.first() {
        Some(&"publish") => Some(Action::Publish),
        Some(&"subscribe") => Some(Action::Subscribe),
        Some(&"all") => None,
        other => return Err(format!("action {other:?} is not publish, subscribe or all")),
    };
    let filter = match rest.get(1..) {
        Some([filter]) => *filter,
        _ => return Err("exactly one topic filter expected after the action".to_string()),
    };
    Ok(AclRule { allow, who, actions, filter: parse_filter(filter)? })
}

fn parse_filter(filter: &str) -> Result<Vec<Level>, String> {
    let parts: Vec<&str> = filter.split('/').collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| match *part {
            "#" if i == parts.len() - 1 => Ok(Level::Rest),
            "+" => Ok(Level::One),
            "%c" => Ok(Level::ClientId),
            "%u" => Ok(Level::Username),
            p if p.contains(['#', '+']) => Err(format!("invalid topic filter {filter:?}")),
            p => Ok(Level::Exact(p.to_string())),
        })
        .collect()
}

/// Whether the rule filter `rule` covers `topic` (publish) or every topic of the filter
/// `topic` (subscribe), with placeholders bound to this client.
fn covers(rule: &[Level], topic: &str, client_id: &str, username: &str, action: Action) -> bool {
    let bound = |value: &str| !value.is_empty() && !value.contains(['/', '+', '#']);
    let mut parts = topic.split('/');
    for level in rule {
        let part = match level {
            Level::Rest => return true,
            _ => match parts.next() {
                Some(part) => part,
                None => return false,
            },
        };
        // In a subscription, a wildcard level is only covered by a rule wildcard.
        let wildcard = action == Action::Subscribe && (part == "+" || part == "#");
        let ok = match level {
            Level::One => part != "#" || action == Action::Publish,
            Level::Exact(want) => !wildcard && part == want,
            Level::ClientId => !wildcard && bound(client_id) && part == client_id,
            Level::Username => !wildcard && bound(username) && part == username,
            Level::Rest => unreachable!("handled above"),
        };
        if !ok {
            return false;
        }
    }
    parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOOR_LOCKS: &str = include_str!("../../examples/door-locks.acl");

    fn acl() -> Acl {
        Acl::parse(DOOR_LOCKS).unwrap()
    }

    #[test]
    fn a_lock_publishes_only_its_own_state() {
        let acl = acl();
        assert!(acl.allows(Action::Publish, "lock-a", "", "devices/lock-a/state"));
        assert!(!acl.allows(Action::Publish, "lock-a", "", "devices/lock-b/state"));
        assert!(!acl.allows(Action::Publish, "lock-a", "", "devices/lock-a/command"));
    }

    #[test]
    fn a_lock_subscribes_only_to_its_own_commands() {
        let acl = acl();
        assert!(acl.allows(Action::Subscribe, "lock-a", "", "devices/lock-a/command"));
        assert!(!acl.allows(Action::Subscribe, "lock-a", "", "devices/lock-b/command"));
        assert!(!acl.allows(Action::Subscribe, "lock-a", "", "devices/+/command"));
        assert!(!acl.allows(Action::Subscribe, "lock-a", "", "devices/#"));
        assert!(!acl.allows(Action::Subscribe, "lock-a", "", "#"));
    }

    #[test]
    fn the_business_app_commands_every_lock() {
        let acl = acl();
        assert!(acl.allows(Action::Publish, "app-1", "business-app", "devices/lock-a/command"));
        assert!(!acl.allows(Action::Publish, "app-1", "someone-else", "devices/lock-a/command"));
    }

    #[test]
    fn wildcards_in_a_client_id_never_bind_a_placeholder() {
        let acl = acl();
        for sneaky in ["+", "#", "a/b", ""] {
            assert!(!acl.allows(Action::Subscribe, sneaky, "", &format!("devices/{sneaky}/command")), "{sneaky:?}");
        }
    }

    #[test]
    fn reserved_topics_are_always_denied() {
        let acl = Acl::parse("allow all all #").unwrap();
        assert!(acl.allows(Action::Subscribe, "x", "", "#"));
        assert!(!acl.allows(Action::Subscribe, "x", "", "$hookline/denied"));
    }

    #[test]
    fn parse_errors_name_the_line() {
        let err = Acl::parse("allow all publish a\npermit all publish b\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        assert!(Acl::parse("allow all publish a/#/b").is_err());
    }
}
