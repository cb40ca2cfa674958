//! PUBLISH from the client: topic aliases, the broker's limits, the QoS 1
//! and QoS 2 handshakes, and the acknowledgements sent once a message is
//! stored.
//!
//! QoS 2 is exactly once: the packet identifier is recorded in the session
//! when the PUBLISH arrives and released by PUBREL; a PUBLISH whose
//! identifier is still recorded is a redelivery, acknowledged again but not
//! routed again.

use tern_codec::{Ack, Packet, Publish, QoS, ReasonCode};
use tern_session::{Message, Session};

use super::connect::is_reserved_topic;
use tern_auth::Access;

use super::{Action, Denial, InboundAck, Now, Protocol, RouteOutcome};

impl Protocol {
    /// The PUBACK (QoS 1) or PUBREC (QoS 2) for `ack`. An error carries
    /// `detail` as its reason string unless the client asked for no
    /// problem information (MQTT 5 §3.1.2.11.7).
    fn ack_packet(&self, ack: InboundAck, reason: ReasonCode, detail: &str) -> Packet {
        let mut body = Ack::with_reason(ack.packet_id, reason);
        if self.client.problem_information && !detail.is_empty() {
            body.properties.reason_string = Some(detail.into());
        }
        let packet = match ack.qos {
            QoS::ExactlyOnce => Packet::PubRec(body),
            QoS::AtMostOnce | QoS::AtLeastOnce => Packet::PubAck(body),
        };
        self.within_client_limit(packet)
    }

    /// A PUBLISH from the client.
    pub(super) fn on_publish(
        &mut self,
        mut publish: Publish,
        session: &mut Session,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        if let Err((reason, detail)) = self.resolve_alias(&mut publish) {
            return self.fail(reason, detail, session, now, out);
        }
        if publish.qos > self.settings.max_qos {
            let detail = "QoS above the Maximum QoS";
            return self.fail(ReasonCode::QoSNotSupported, detail, session, now, out);
        }
        if publish.retain && !self.settings.retain_available {
            let detail = "retained messages are disabled";
            return self.fail(ReasonCode::RetainNotSupported, detail, session, now, out);
        }
        let ack = publish.packet_id.map(|packet_id| InboundAck {
            packet_id,
            qos: publish.qos,
        });
        if let Some(ack) = ack {
            let duplicate =
                ack.qos == QoS::ExactlyOnce && session.incoming_qos2().contains(&ack.packet_id);
            let outstanding = self.unacked_qos1 + session.incoming_qos2().len();
            if self.version.is_v5()
                && !duplicate
                && outstanding >= usize::from(self.settings.receive_maximum)
            {
                let detail = "more unacknowledged QoS 1 and 2 messages than the Receive Maximum";
                return self.fail(
                    ReasonCode::ReceiveMaximumExceeded,
                    detail,
                    session,
                    now,
                    out,
                );
            }
        }
        if is_reserved_topic(&publish.topic) {
            return self.refuse_publish(ack, RouteOutcome::ReservedTopic, session, out);
        }
        if !self.topic_within_limits(&publish.topic) {
            out.push(Action::Denied {
                denial: Denial::Limit,
                detail: "a PUBLISH topic beyond max_topic_length or max_topic_levels".into(),
            });
            return self.refuse_publish(ack, RouteOutcome::TopicInvalid, session, out);
        }
        if !self.authorized(Access::Write, &publish.topic) {
            out.push(Action::Denied {
                denial: Denial::Publish,
                detail: format!("the ACL does not allow publishing to {:?}", publish.topic),
            });
            return self.refuse_publish(ack, RouteOutcome::NotAuthorized, session, out);
        }
        let message = Message::new(publish, now.wall);
        match ack {
            None => out.push(Action::Route { message, ack: None }),
            Some(ack) if ack.qos == QoS::AtLeastOnce => {
                self.unacked_qos1 += 1;
                out.push(Action::Route {
                    message,
                    ack: Some(ack),
                });
            }
            Some(ack) if session.receive_qos2(ack.packet_id) => out.push(Action::Route {
                message,
                ack: Some(ack),
            }),
            // A redelivery of a QoS 2 message not yet released.
            Some(ack) => out.push(Action::AckInOrder {
                ack,
                outcome: RouteOutcome::Delivered,
            }),
        }
    }

    /// Replaces an alias by its topic, or records a new alias (MQTT 5
    /// §3.3.2.3.4).
    fn resolve_alias(&mut self, publish: &mut Publish) -> Result<(), (ReasonCode, &'static str)> {
        let Some(alias) = publish.properties().topic_alias else {
            return Ok(());
        };
        let maximum = usize::from(self.settings.max_topic_alias);
        let aliases = &mut self.extras_mut().aliases;
        if aliases.is_empty() && usize::from(alias) <= maximum {
            // Allocated at the first alias: most clients never use one.
            *aliases = vec![None; maximum].into_boxed_slice();
        }
        let slot = usize::from(alias)
            .checked_sub(1)
            .and_then(|index| aliases.get_mut(index))
            .ok_or((
                ReasonCode::TopicAliasInvalid,
                "topic alias above the Topic Alias Maximum",
            ))?;
        if publish.topic.is_empty() {
            publish.topic = slot.clone().ok_or((
                ReasonCode::ProtocolError,
                "empty topic with a topic alias that was never set",
            ))?;
        } else {
            *slot = Some(publish.topic.clone());
        }
        Ok(())
    }

    /// A PUBLISH that is not routed (to `$SYS`, denied by the ACL, beyond
    /// the topic limits), but acknowledged in order with the other
    /// publishes of this client: MQTT 5 clients are told why (`outcome`);
    /// older ones cannot be, and are acknowledged as Mosquitto does.
    fn refuse_publish(
        &mut self,
        ack: Option<InboundAck>,
        outcome: RouteOutcome,
        session: &mut Session,
        out: &mut Vec<Action>,
    ) {
        let Some(ack) = ack else {
            return;
        };
        match ack.qos {
            QoS::AtLeastOnce => self.unacked_qos1 += 1,
            // Before MQTT 5 the exchange goes on: the PUBREL that follows
            // must find the identifier. An MQTT 5 PUBREC with an error ends it.
            QoS::ExactlyOnce if !self.version.is_v5() => {
                session.receive_qos2(ack.packet_id);
            }
            _ => {}
        }
        out.push(Action::AckInOrder { ack, outcome });
    }

    /// A routed message is stored: acknowledge it.
    pub(super) fn on_routed(
        &mut self,
        ack: InboundAck,
        outcome: RouteOutcome,
        session: &mut Session,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        if ack.qos == QoS::AtLeastOnce {
            self.unacked_qos1 = self.unacked_qos1.saturating_sub(1);
        }
        let (reason, detail) = match outcome {
            RouteOutcome::Delivered => (ReasonCode::Success, ""),
            RouteOutcome::NoSubscribers => (ReasonCode::NoMatchingSubscribers, ""),
            RouteOutcome::ReservedTopic if self.version.is_v5() => (
                ReasonCode::NotAuthorized,
                "$SYS topics are published by the broker only",
            ),
            RouteOutcome::NotAuthorized if self.version.is_v5() => (
                ReasonCode::NotAuthorized,
                "the broker's ACL does not allow this client to publish to this topic",
            ),
            RouteOutcome::TopicInvalid if self.version.is_v5() => (
                ReasonCode::TopicNameInvalid,
                "the topic has more levels or bytes than the broker allows",
            ),
            RouteOutcome::ReservedTopic
            | RouteOutcome::NotAuthorized
            | RouteOutcome::TopicInvalid => (ReasonCode::Success, ""),
            RouteOutcome::StoreFailed | RouteOutcome::NodeUnconfirmed => {
                let (reason, detail) = if outcome == RouteOutcome::StoreFailed {
                    (
                        ReasonCode::ImplementationSpecificError,
                        "the session store failed; publish again later",
                    )
                } else {
                    (
                        ReasonCode::UnspecifiedError,
                        "another node of the cluster with subscribers for this topic did not \
                         confirm the message (unreachable, or its store failed); publish again later",
                    )
                };
                if !self.version.is_v5() {
                    // No way to say it before MQTT 5: close without
                    // acknowledging, so that the client publishes again.
                    return self.fail(reason, detail, session, now, out);
                }
                if ack.qos == QoS::ExactlyOnce {
                    session.release_qos2(ack.packet_id);
                }
                (reason, detail)
            }
        };
        out.push(Action::Send(self.ack_packet(ack, reason, detail)));
    }

    /// PUBREL: the client releases a QoS 2 message; answer PUBCOMP.
    pub(super) fn on_pubrel(&mut self, ack: Ack, session: &mut Session, out: &mut Vec<Action>) {
        let reason = if session.release_qos2(ack.packet_id) {
            ReasonCode::Success
        } else {
            ReasonCode::PacketIdentifierNotFound
        };
        let pubcomp = Ack::with_reason(ack.packet_id, reason);
        out.push(Action::Send(Packet::PubComp(pubcomp)));
    }
}
