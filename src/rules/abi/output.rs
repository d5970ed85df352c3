//! What a guest emits: routes and their headers and values, MQTT publishes and their
//! properties, log lines. Each is checked as it comes; one that breaks a rule of the ABI
//! voids the whole decision, so a half-applied decision never reaches a destination.

use super::codes::{
    ERR_LIMIT, ERR_MEMORY, ERR_PUBLISH, ERR_TOO_LONG, ERR_TOPIC, ERR_UNKNOWN, ERR_WRONG_TIME, MAX_HEADERS, MAX_HEADER_NAME_LEN,
    MAX_HEADER_VALUE_LEN, MAX_KEY_LEN, MAX_PROPERTY_LEN, MAX_PUBLISHES, MAX_ROUTES,
};
use super::guest_memory::{guest_range, guest_str};
use super::state::{HostState, Phase};
use crate::hooks::Hook;
use crate::rules::decision::{MqttMessage, Route, RouteValue};

/// `route` and `route_to` on the guest's memory: validates what the guest passed and
/// records the route to the destination named at `(dest_ptr, dest_len)`, or to the
/// first one (`route`).
pub(super) fn add_route(
    memory: &[u8],
    state: &mut HostState,
    dest: Option<(i32, i32)>,
    (topic_ptr, topic_len): (i32, i32),
    (key_ptr, key_len): (i32, i32),
) -> i32 {
    if state.phase != Phase::Event || state.hook() == Some(Hook::KafkaRecord) {
        return ERR_WRONG_TIME;
    }
    if state.routes.len() >= MAX_ROUTES {
        return state.invalidate("more routes than allowed for one event", ERR_LIMIT);
    }
    let destination = match dest {
        None => 0,
        Some((dest_ptr, dest_len)) => {
            let Some(range) = guest_range(memory, dest_ptr, dest_len) else { return ERR_MEMORY };
            match state.destinations.index_of(&memory[range]) {
                Some(destination) => destination,
                None => return state.invalidate("route_to names no configured destination", ERR_UNKNOWN),
            }
        }
    };
    let Some(range) = guest_range(memory, topic_ptr, topic_len) else { return ERR_MEMORY };
    let topic = match state.route_topic(destination, &memory[range]) {
        Ok(topic) => topic,
        Err(why) => {
            return state.invalidate(why, ERR_TOPIC);
        }
    };
    let key = if key_len == -1 {
        None
    } else {
        let Some(range) = guest_range(memory, key_ptr, key_len) else { return ERR_MEMORY };
        if range.len() > MAX_KEY_LEN {
            return state.invalidate("record key too long", ERR_TOO_LONG);
        }
        Some(memory[range].to_vec())
    };
    state.routes.push(Route { destination, topic, key, headers: Vec::new(), value: RouteValue::Envelope });
    state.routes.len() as i32 - 1
}

/// `route_value` on the guest's memory: sets the value of the last route.
pub(super) fn set_route_value(memory: &[u8], state: &mut HostState, kind: i32, ptr: i32, len: i32) -> i32 {
    if state.phase != Phase::Event || state.routes.is_empty() {
        return ERR_WRONG_TIME;
    }
    let value = match kind {
        0 => RouteValue::Envelope,
        1 => RouteValue::Payload,
        2 => match guest_range(memory, ptr, len) {
            Some(range) => RouteValue::Bytes(memory[range].to_vec()),
            None => return ERR_MEMORY,
        },
        _ => return ERR_UNKNOWN,
    };
    state.routes.last_mut().expect("checked above").value = value;
    0
}

/// `publish` on the guest's memory: validates the message and records it.
pub(super) fn add_publish(memory: &[u8], state: &mut HostState, topic: (i32, i32), qos: i32, retain: i32, payload: (i32, i32)) -> i32 {
    if state.phase != Phase::Event || state.hook() != Some(Hook::KafkaRecord) {
        return ERR_WRONG_TIME;
    }
    if state.publishes.len() >= MAX_PUBLISHES {
        return state.invalidate("more publishes than allowed for one record", ERR_LIMIT);
    }
    let Some(range) = guest_range(memory, topic.0, topic.1) else { return ERR_MEMORY };
    let Ok(name) = std::str::from_utf8(&memory[range]) else {
        return state.invalidate("publish topic is not UTF-8", ERR_PUBLISH);
    };
    if name.is_empty() || name.contains(['+', '#', '\0']) || crate::names::reserved(name) {
        return state.invalidate("publish topic is empty, has a wildcard or is the gateway's own", ERR_PUBLISH);
    }
    if !(0..=2).contains(&qos) || !(0..=1).contains(&retain) {
        return state.invalidate("publish QoS not 0, 1 or 2, or retain not 0 or 1", ERR_PUBLISH);
    }
    let payload = match payload.1 {
        -1 => None,
        _ => match guest_range(memory, payload.0, payload.1) {
            Some(range) => Some(memory[range].to_vec()),
            None => return ERR_MEMORY,
        },
    };
    let message = MqttMessage { topic: name.to_string(), qos: qos as u8, retain: retain == 1, payload, properties: Default::default() };
    state.publishes.push(message);
    state.publishes.len() as i32 - 1
}

/// `publish_property` on the guest's memory: one MQTT 5 property of the last publish.
pub(super) fn set_publish_property(memory: &[u8], state: &mut HostState, id: i32, ptr: i32, len: i32) -> i32 {
    if state.phase != Phase::Event || state.publishes.is_empty() {
        return ERR_WRONG_TIME;
    }
    let Some(range) = guest_range(memory, ptr, len) else { return ERR_MEMORY };
    let bytes = &memory[range];
    if bytes.len() > MAX_PROPERTY_LEN {
        return state.invalidate("publish property longer than 4096 bytes", ERR_TOO_LONG);
    }
    let text = || std::str::from_utf8(bytes).ok().map(str::to_string);
    let properties = &mut state.publishes.last_mut().expect("checked above").properties;
    let valid = match id {
        1 if bytes == [0] || bytes == [1] => {
            properties.payload_format_indicator = Some(bytes[0]);
            true
        }
        2 if bytes.len() == 4 => {
            properties.message_expiry_interval = Some(u32::from_be_bytes(bytes.try_into().expect("4 bytes")));
            true
        }
        3 => text().map(|t| properties.content_type = Some(t)).is_some(),
        8 => text().filter(|t| !t.is_empty() && !t.contains(['+', '#'])).map(|t| properties.response_topic = Some(t)).is_some(),
        9 => {
            properties.correlation_data = Some(bytes.to_vec());
            true
        }
        1 | 2 => false,
        _ => return ERR_UNKNOWN,
    };
    match valid {
        true => 0,
        false => state.invalidate("bad publish property value", ERR_PUBLISH),
    }
}

/// `publish_user_property` on the guest's memory.
pub(super) fn add_user_property(memory: &[u8], state: &mut HostState, name: (i32, i32), value: (i32, i32)) -> i32 {
    if state.phase != Phase::Event || state.publishes.is_empty() {
        return ERR_WRONG_TIME;
    }
    let (Some(name), Some(value)) = (guest_str(memory, name.0, name.1), guest_str(memory, value.0, value.1)) else {
        return ERR_MEMORY;
    };
    if name.len() > MAX_PROPERTY_LEN || value.len() > MAX_PROPERTY_LEN {
        return state.invalidate("user property longer than 4096 bytes", ERR_TOO_LONG);
    }
    let properties = &mut state.publishes.last_mut().expect("checked above").properties;
    if properties.user_properties.len() >= MAX_HEADERS {
        return state.invalidate("more user properties than allowed on one publish", ERR_LIMIT);
    }
    properties.user_properties.push((name.to_string(), value.to_string()));
    0
}

/// `route_header` on the guest's memory: validates the header and adds it to the last route.
pub(super) fn add_header(memory: &[u8], state: &mut HostState, name_ptr: i32, name_len: i32, value_ptr: i32, value_len: i32) -> i32 {
    if state.phase != Phase::Event || state.routes.is_empty() {
        return ERR_WRONG_TIME;
    }
    let (Some(name), Some(value)) = (guest_str(memory, name_ptr, name_len), guest_range(memory, value_ptr, value_len)) else {
        return ERR_MEMORY;
    };
    let name = name.to_string();
    let value = memory[value].to_vec();
    let route = state.routes.last_mut().expect("checked non-empty above");
    if route.headers.len() >= MAX_HEADERS {
        return state.invalidate("more headers than allowed for one route", ERR_LIMIT);
    }
    if name.is_empty() || name.len() > MAX_HEADER_NAME_LEN || value.len() > MAX_HEADER_VALUE_LEN {
        return state.invalidate("record header name or value too long", ERR_TOO_LONG);
    }
    route.headers.push((name, value));
    0
}

/// `log` on the guest's memory: the line, cut and rate-limited, goes to the gateway log.
pub(super) fn write_log(memory: &[u8], state: &mut HostState, level: i32, ptr: i32, len: i32) {
    if !state.log_allowed() {
        return;
    }
    let Some(range) = guest_range(memory, ptr, len.min(4096)) else { return };
    let line = String::from_utf8_lossy(&memory[range]);
    let rule = &*state.rule;
    match level {
        0 => tracing::error!(rule, "{line}"),
        1 => tracing::warn!(rule, "{line}"),
        2 => tracing::info!(rule, "{line}"),
        _ => tracing::debug!(rule, "{line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::HookEvent;
    use crate::names::check_kafka_topic;
    use crate::rules::abi::read::read_event;
    use crate::sink::DestinationNames;

    /// One host call with whatever arguments a hostile guest might pass.
    #[derive(Debug, Clone)]
    enum Call {
        Route { topic: (i32, i32), key: (i32, i32) },
        Header { name: (i32, i32), value: (i32, i32) },
        Log { level: i32, text: (i32, i32) },
        Read { field: i32, dst: (i32, i32) },
    }

    /// A pointer and length: mostly inside a small memory, sometimes anywhere in i32.
    fn range() -> impl proptest::strategy::Strategy<Value = (i32, i32)> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (0i32..300, 0i32..300),
            1 => (0i32..300, Just(-1)),
            1 => (any::<i32>(), any::<i32>()),
        ]
    }

    fn call() -> impl proptest::strategy::Strategy<Value = Call> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (range(), range()).prop_map(|(topic, key)| Call::Route { topic, key }),
            3 => (range(), range()).prop_map(|(name, value)| Call::Header { name, value }),
            1 => (any::<i32>(), range()).prop_map(|(level, text)| Call::Log { level, text }),
            1 => (-1i32..6, range()).prop_map(|(field, dst)| Call::Read { field, dst }),
        ]
    }

    /// Guest memory: arbitrary bytes, some of it a topic name Kafka accepts.
    fn memory() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        (proptest::collection::vec(any::<u8>(), 0..300), "[a-z._-]{1,40}", 0usize..300).prop_map(|(mut memory, topic, at)| {
            let at = at.min(memory.len());
            memory.splice(at..at, topic.bytes());
            memory
        })
    }

    fn event_state() -> HostState {
        let mut state = HostState::new(
            "hostile.wat".into(),
            Default::default(),
            wasmtime::StoreLimitsBuilder::new().build(),
            DestinationNames::kafka(),
        );
        state.phase = Phase::Event;
        let mut event = HookEvent::new(Hook::MessagePublish, "lock-1".into(), "".into());
        event.topic = bytes::Bytes::from_static(b"devices/lock-1/state");
        event.payload = bytes::Bytes::from_static(b"{\"battery\":83.4}");
        state.event = Some(event);
        state
    }

    #[test]
    fn route_to_answers_wrong_time_before_it_looks_the_destination_up() {
        let memory = b"nowhere".to_vec();
        let mut state = event_state();
        state.phase = Phase::Init;
        assert_eq!(add_route(&memory, &mut state, Some((0, 7)), (0, 7), (0, -1)), ERR_WRONG_TIME);
        assert!(state.invalid.is_none());
        state.phase = Phase::Event;
        assert_eq!(add_route(&memory, &mut state, Some((0, 7)), (0, 7), (0, -1)), ERR_UNKNOWN, "no destination `nowhere`");
        assert!(state.invalid.is_some(), "an unknown destination voids the decision");
        assert_eq!(add_route(&memory, &mut state, Some((0, 99)), (0, 7), (0, -1)), ERR_MEMORY);
    }

    proptest::proptest! {
        /// Whatever a guest passes to `route`, `route_header`, `log` and `event_read`, the
        /// host answers with a route index, 0 or one of the ABI's error codes, never
        /// panics, never touches memory outside the guest's, and every route it keeps is
        /// one Kafka accepts. `PROPTEST_CASES` sets the number of cases.
        #[test]
        fn guest_output_is_a_valid_route_or_a_clear_error(mut memory in memory(), calls in proptest::collection::vec(call(), 1..40)) {
            let mut state = event_state();
            let original_len = memory.len();
            for call in calls {
                let routes_before = state.routes.clone();
                let result = match call {
                    Call::Route { topic, key } => add_route(&memory, &mut state, None, topic, key),
                    Call::Header { name, value } => add_header(&memory, &mut state, name.0, name.1, value.0, value.1),
                    Call::Log { level, text } => {
                        write_log(&memory, &mut state, level, text.0, text.1);
                        0
                    }
                    Call::Read { field, dst } => read_event(&mut memory, &state, field, dst.0, dst.1),
                };
                proptest::prop_assert_eq!(memory.len(), original_len);
                match (&call, result) {
                    (Call::Route { topic, key }, index) if index >= 0 => {
                        let route = &state.routes[index as usize];
                        let range = guest_range(&memory, topic.0, topic.1).expect("a kept route's topic was in memory");
                        proptest::prop_assert_eq!(route.topic.as_bytes(), &memory[range]);
                        proptest::prop_assert!(check_kafka_topic(&route.topic).is_ok());
                        match key.1 {
                            -1 => proptest::prop_assert_eq!(&route.key, &None),
                            _ => proptest::prop_assert!(route.key.as_ref().is_some_and(|k| k.len() <= MAX_KEY_LEN)),
                        }
                    }
                    (Call::Header { name, .. }, 0) => {
                        let route = state.routes.last().expect("a header needs a route");
                        let (kept_name, kept_value) = route.headers.last().expect("header kept");
                        proptest::prop_assert_eq!(Some(kept_name.as_str()), guest_str(&memory, name.0, name.1));
                        proptest::prop_assert!(!kept_name.is_empty() && kept_name.len() <= MAX_HEADER_NAME_LEN);
                        proptest::prop_assert!(kept_value.len() <= MAX_HEADER_VALUE_LEN && route.headers.len() <= MAX_HEADERS);
                    }
                    (Call::Read { .. }, _) | (Call::Log { .. }, _) => {}
                    (_, code) => {
                        proptest::prop_assert!(
                            [ERR_WRONG_TIME, ERR_MEMORY, ERR_LIMIT, ERR_TOPIC, ERR_TOO_LONG].contains(&code),
                            "undocumented result {}", code
                        );
                        proptest::prop_assert_eq!(&state.routes, &routes_before, "a refused call changes no route");
                        if [ERR_LIMIT, ERR_TOPIC, ERR_TOO_LONG].contains(&code) {
                            proptest::prop_assert!(state.invalid.is_some(), "a broken limit voids the decision");
                        }
                    }
                }
                proptest::prop_assert!(state.routes.len() <= MAX_ROUTES);
            }
        }
    }
}
