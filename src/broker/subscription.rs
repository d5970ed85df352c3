//! One client's subscription as the edge keeps it: the options rumqttd's router does not
//! honour (No Local, Retain As Published, Retain Handling, the granted QoS a delivery is
//! capped at) and the identifiers that tie the router's deliveries back to it.

use rumqttd::protocol::{Filter, QoS, RetainForwardRule};

use crate::topic::TopicFilter;

#[derive(Debug, Clone)]
pub struct Subscription {
    /// The filter as the client sent it (`$share/<group>/...` included).
    pub filter: String,
    /// What it matches: the filter without a shared-subscription prefix.
    pub matcher: TopicFilter,
    /// The subscription identifier the router attaches to this subscription's
    /// deliveries; unique within the connection.
    pub router_id: usize,
    pub granted: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// Whether retained messages sent because of the last SUBSCRIBE are delivered
    /// (Retain Handling 0, or 1 on a new subscription).
    pub send_retained: bool,
    /// The client's own Subscription Identifier (MQTT 5), returned with deliveries.
    pub client_sub_id: Option<usize>,
}

impl Subscription {
    /// The filter the subscription matches topics with (`$share/<group>/<filter>` matches
    /// as `<filter>`); `None` when it breaks MQTT's filter rules.
    pub fn matcher_of(filter: &str) -> Option<TopicFilter> {
        let inner = match filter.strip_prefix("$share/") {
            Some(rest) => rest.split_once('/').filter(|(group, _)| !group.is_empty() && !group.contains(['+', '#']))?.1,
            None => filter,
        };
        TopicFilter::parse(inner)
    }

    /// Whether the router serves it: a shared subscription, or a filter with wildcards.
    /// A subscription to one exact topic (a lock's command topic) the edge serves
    /// itself, through the session's inbox.
    pub fn needs_router(&self) -> bool {
        self.filter.starts_with("$share/") || self.filter.contains(['+', '#'])
    }

    /// Applies a SUBSCRIBE's options; `existed` says whether the filter was subscribed
    /// already (Retain Handling 1 sends retained messages only to new subscriptions).
    pub fn update(&mut self, requested: &Filter, existed: bool, client_sub_id: Option<usize>) {
        self.granted = requested.qos as u8;
        self.no_local = requested.nolocal;
        self.retain_as_published = requested.preserve_retain;
        self.send_retained = match requested.retain_forward_rule {
            RetainForwardRule::OnEverySubscribe => true,
            RetainForwardRule::OnNewSubscribe => !existed,
            RetainForwardRule::Never => false,
        };
        self.client_sub_id = client_sub_id;
    }

    /// The subscription the edge asks the router for: always QoS 1, since the router
    /// keeps a filter's first QoS through a SUBSCRIBE that changes it; the edge caps each
    /// delivery at the granted QoS and speaks QoS 2 with the client itself. No retained
    /// messages: the edge sends them (`crate::retained`).
    pub fn router_filter(&self) -> Filter {
        Filter {
            path: self.filter.clone(),
            qos: QoS::AtLeastOnce,
            nolocal: false,
            preserve_retain: false,
            retain_forward_rule: RetainForwardRule::Never,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_subscription_matches_as_its_inner_filter() {
        let matcher = Subscription::matcher_of("$share/billing/devices/+/state").unwrap();
        assert!(matcher.matches(b"devices/1/state"));
        assert!(Subscription::matcher_of("$share//devices/#").is_none());
        assert!(Subscription::matcher_of("$share/g").is_none());
        assert!(Subscription::matcher_of("a/#/b").is_none());
    }
}
