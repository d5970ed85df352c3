//! How many connections this process can hold: its open-file limit, raised at start to
//! the most it may have (the hard limit, as Go's runtime and most servers do), less the
//! files the gateway keeps for itself (`broker.reserved_files`: spool segments, rules,
//! Kafka and RabbitMQ connections, the admin endpoint).
//!
//! Sockets are accepted only while they fit (`Capacity::sockets`), so the gateway's own
//! files never fail for want of a descriptor; a fleet beyond that waits in the listen
//! queue. A little room is kept for handshakes, so that a CONNECT beyond what fits is
//! answered (CONNACK "server busy") rather than left unread.

use crate::config::BrokerConfig;

/// Sockets kept for connections in their handshake, of those that fit: the most a
/// CONNECT beyond the connection limit waits for its refusal to be written.
const HANDSHAKE_ROOM: usize = 64;

/// The connections and sockets this process can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Open-file limit in force.
    pub open_files: u64,
    /// Sockets (connected or in their handshake) that fit beside the reserved files.
    pub sockets: usize,
    /// Clients connected at once: `broker.max_connections`, or fewer when the sockets
    /// do not fit them.
    pub connections: usize,
}

impl Capacity {
    /// Raises the soft open-file limit to the hard one and plans with it; logs the limit
    /// and warns when `broker.max_connections` does not fit.
    pub fn plan(config: &BrokerConfig) -> Capacity {
        let before = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024);
        let open_files = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(raised) => raised,
            Err(error) => {
                tracing::warn!(%error, limit = before, "cannot raise the open-file limit");
                before
            }
        };
        let capacity = Capacity::of(open_files, config);
        tracing::info!(open_files, raised_from = before, connections = capacity.connections, "open-file limit");
        if capacity.connections < config.max_connections {
            tracing::warn!(
                open_files,
                reserved_files = config.reserved_files,
                max_connections = config.max_connections,
                connections = capacity.connections,
                "broker.max_connections does not fit the open-file limit less broker.reserved_files: clients beyond `connections` \
                 are refused (CONNACK server busy); raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower broker.max_connections"
            );
        }
        capacity
    }

    fn of(open_files: u64, config: &BrokerConfig) -> Capacity {
        let sockets = open_files.saturating_sub(config.reserved_files as u64).min(usize::MAX as u64) as usize;
        // Never less than one connection: a limit that leaves none is the operator's to
        // see in the warning, not a gateway that refuses everyone.
        let room = HANDSHAKE_ROOM.min(sockets / 8);
        let connections = config.max_connections.min(sockets.saturating_sub(room)).max(1);
        Capacity { open_files, sockets: sockets.max(connections + room), connections }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_the_open_files_left_after_the_reserve_and_a_little_room_for_handshakes() {
        let config = BrokerConfig { max_connections: 10_000, reserved_files: 256, ..BrokerConfig::default() };
        assert_eq!(Capacity::of(1_048_576, &config), Capacity { open_files: 1_048_576, sockets: 1_048_320, connections: 10_000 });
        assert_eq!(Capacity::of(1024, &config), Capacity { open_files: 1024, sockets: 768, connections: 704 });
        assert_eq!(Capacity::of(300, &config).connections, 39);
        assert_eq!(Capacity::of(100, &config).connections, 1);
    }
}
