//! SUBSCRIBE and UNSUBSCRIBE: the session records the subscription, the
//! runtime updates the router, and retained messages follow the SUBACK as
//! the subscription's retain handling says.

use std::num::NonZeroU32;

use tern_codec::{
    AckProperties, Packet, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck,
    Unsubscribe,
};
use tern_session::{Session, Subscription};

use super::{Action, Protocol};

/// The SUBACK code granting `qos`.
fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}

impl Protocol {
    /// SUBSCRIBE: every filter within the limits that the ACL allows is
    /// granted, at most at the broker's maximum QoS; the others get their
    /// reason code (0x8F, 0x97, 0x87; MQTT 3.1.1: 0x80). Shared
    /// subscriptions get no retained messages (MQTT 5 §4.8.2).
    pub(super) fn on_subscribe(
        &mut self,
        subscribe: Subscribe,
        session: &mut Session,
        out: &mut Vec<Action>,
    ) {
        let identifier = subscribe
            .properties
            .subscription_identifier
            .and_then(NonZeroU32::new);
        let mut reason_codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        for (filter, mut options) in subscribe.filters {
            if let Some((reason, denial)) = self.subscription_refusal(&filter, session) {
                reason_codes.push(reason);
                out.push(denial);
                continue;
            }
            options.qos = options.qos.min(self.settings.max_qos);
            let subscription = Subscription {
                options,
                identifier,
            };
            // The session keeps the filter: copy it out of the receive buffer.
            let previous = session.subscribe(filter.detached(), subscription);
            reason_codes.push(granted(options.qos));
            let send_retained = !filter.is_shared()
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNewSubscription => previous.is_none(),
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                retained.push(Action::SendRetained {
                    filter: filter.clone(),
                    subscription,
                });
            }
            out.push(Action::Subscribe {
                filter,
                subscription,
            });
        }
        out.push(Action::Send(Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            properties: AckProperties::default(),
            reason_codes,
        })));
        out.extend(retained);
    }

    /// UNSUBSCRIBE: removes each filter the session has.
    pub(super) fn on_unsubscribe(
        &mut self,
        unsubscribe: Unsubscribe,
        session: &mut Session,
        out: &mut Vec<Action>,
    ) {
        let mut reason_codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in unsubscribe.filters {
            if session.unsubscribe(&filter) {
                reason_codes.push(ReasonCode::Success);
                out.push(Action::Unsubscribe(filter));
            } else {
                reason_codes.push(ReasonCode::NoSubscriptionExisted);
            }
        }
        out.push(Action::Send(Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: AckProperties::default(),
            reason_codes,
        })));
    }
}
