//! How a connection ended, and what that means for the client: the hook's reason, the
//! MQTT 5 DISCONNECT sent, whether the will fires.

use rumqttd::protocol::DisconnectReasonCode;

use crate::broker::registry::CloseReason;
use crate::hooks::Reason;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// DISCONNECT from the client; `true` when it asked for its will (MQTT 5 0x04).
    Disconnected {
        will: bool,
    },
    /// The socket closed or failed without a DISCONNECT.
    Closed,
    KeepAlive,
    Closing(CloseReason),
    /// The gateway is shutting down and the client sent new work.
    Shutdown,
    /// A packet MQTT does not allow; the MQTT 5 reason sent with DISCONNECT.
    Protocol(DisconnectReasonCode),
    /// The spool could not take this client's publish; it goes unacknowledged.
    SpoolRefused,
    /// The router dropped the connection (it already knows).
    Router(DisconnectReasonCode),
}

impl End {
    /// The `reason` of `client.disconnected`.
    pub(super) fn hook_reason(self) -> Reason {
        match self {
            End::Disconnected { .. } => Reason::Normal,
            End::Closed | End::Shutdown | End::SpoolRefused | End::Closing(CloseReason::ShuttingDown) => Reason::Closed,
            End::KeepAlive => Reason::KeepaliveTimeout,
            End::Closing(CloseReason::TakenOver) => Reason::Takeover,
            End::Closing(CloseReason::Administrative) => Reason::Administrative,
            End::Protocol(_) | End::Router(_) => Reason::ProtocolError,
        }
    }

    /// The MQTT 5 DISCONNECT the gateway sends as it closes, if any.
    pub(super) fn goodbye(self) -> Option<DisconnectReasonCode> {
        match self {
            End::Disconnected { .. } | End::Closed | End::SpoolRefused => None,
            End::KeepAlive => Some(DisconnectReasonCode::KeepAliveTimeout),
            End::Closing(CloseReason::TakenOver) => Some(DisconnectReasonCode::SessionTakenOver),
            End::Closing(CloseReason::Administrative) => Some(DisconnectReasonCode::AdministrativeAction),
            End::Shutdown | End::Closing(CloseReason::ShuttingDown) => Some(DisconnectReasonCode::ServerShuttingDown),
            End::Protocol(code) | End::Router(code) => Some(code),
        }
    }

    pub(super) fn fires_will(self) -> bool {
        !matches!(self, End::Disconnected { will: false })
    }
}
