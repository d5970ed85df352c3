//! Names and hashes that every stage shares, on the ground floor so that none of them
//! reaches up into another stage for them: Kafka's topic-name rule (config, rules and
//! sinks check against it), the gateway's own MQTT topics (the ACL and the rules keep
//! clients and rules out of them), and the hash that spreads client ids and topic names.

/// Kafka's topic name rule: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_kafka_topic(topic: &str) -> Result<(), &'static str> {
    let legal = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-';
    match topic {
        "" => Err("empty Kafka topic name"),
        "." | ".." => Err("Kafka topic name `.` or `..`"),
        t if t.len() > 249 => Err("Kafka topic name over 249 bytes"),
        t if !t.bytes().all(legal) => Err("Kafka topic name with a character other than a-z A-Z 0-9 . _ -"),
        _ => Ok(()),
    }
}

/// Topic prefixes the gateway keeps for itself; clients may neither publish nor
/// subscribe there, and rules may not publish there. (`hookline/void/` held refused
/// subscriptions in earlier versions; it stays reserved.)
pub const RESERVED_PREFIXES: [&str; 2] = ["$hookline/", "hookline/void/"];

/// Whether `topic` is one of the gateway's own.
pub fn reserved(topic: &str) -> bool {
    RESERVED_PREFIXES.iter().any(|p| topic.starts_with(p))
}

/// FNV-1a: a few instructions per byte, stable across runs and builds, enough to spread
/// client ids over spool shards and topic names over the metrics table (neither is
/// chosen by anyone trying to make them collide).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert_eq!(check_kafka_topic("message_state"), Ok(()));
        assert_eq!(check_kafka_topic("a.b-c_1"), Ok(()));
        for bad in ["", ".", "..", "a/b", "a b", "caf\u{e9}", &"x".repeat(250)] {
            assert!(check_kafka_topic(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_kafka_topic(&"x".repeat(249)), Ok(()));
    }
}
