//! Who the client is and what it may do: authentication at CONNECT, the
//! ACL checks, and the limits on topics and subscriptions.
//!
//! - A CONNECT without an Authentication Method is checked against the
//!   password file (`tern_auth::Authorizer::check_password`): an unknown
//!   user or a wrong or missing password gets CONNACK 0x86 (MQTT 3.1.1:
//!   4); no user name when anonymous clients are not allowed, 0x87 (5).
//!   Whether they are is the broker-wide `allow_anonymous` (in the
//!   `Authorizer`) unless the connection's listener has its own
//!   (`Protocol::set_allow_anonymous`), which then decides, whatever a
//!   reload of the password file changes.
//! - A CONNECT with the method `SCRAM-SHA-256` starts enhanced
//!   authentication: the client-first message is in its Authentication
//!   Data, the server-first goes back in AUTH 0x18, the client-final comes
//!   in the client's AUTH 0x18, and the server-final rides in the CONNACK.
//!   The connection waits in `State::Authenticating` until the CONNECT
//!   deadline. Any other method gets CONNACK 0x8C; a failed exchange 0x86.
//!   The SCRAM user name is the client's user; a CONNECT that also names
//!   a different user is refused.
//! - A client connected with SCRAM may re-authenticate (AUTH 0x19, MQTT 5
//!   §4.12.1) as the same user; a failure ends the connection with
//!   DISCONNECT 0x87.
//! - A client the transport authenticated (`Protocol::set_verified_user`,
//!   a TLS client certificate) needs no password: the verified name is its
//!   user.
//! - Publishing needs write permission on the topic; subscribing needs
//!   subscribe permission on the filter (without `$share/GROUP/`); every
//!   delivery needs read permission on the topic, checked as the message
//!   leaves the queue (`outbound`), so that a reloaded ACL applies to
//!   subscriptions made before it. A will needs write permission
//!   (`connect`).
//!
//! A password hash costs milliseconds of CPU: with a password file the
//! protocol asks the runtime to check it ([`Action::CheckPassword`], run
//! off the async threads) and waits in `State::Authenticating`;
//! `max_connection_rate` bounds how many a flood can ask for.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tern_auth::scram::{self, ScramServer};
use tern_auth::{Access, Authorizer, Client, Refusal};
use tern_codec::{Auth, AuthProperties, ByteString, Connect, Packet, ReasonCode, TopicFilter};
use tern_session::Session;

use super::{Action, Input, Now, Protocol, State, WillFate, detach};

/// What authentication, authorization or a limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// A CONNECT: bad credentials, anonymous, failed enhanced
    /// authentication or an unknown authentication method.
    Connect,
    /// A will whose topic the client may not publish to.
    Will,
    /// A PUBLISH the client may not make.
    Publish,
    /// A subscription the client may not make.
    Subscribe,
    /// A client identifier, topic or number of subscriptions beyond the
    /// configured limits.
    Limit,
}

/// A CONNECT waiting to be authenticated.
#[derive(Debug)]
pub(super) enum PendingAuth {
    /// An enhanced authentication waiting for the client's AUTH.
    Scram {
        server: Box<ScramServer>,
        connect: Connect,
    },
    /// A password being checked by the runtime.
    Password { connect: Connect },
}

impl Protocol {
    /// Applies `authorizer` from the next input on: the runtime calls it
    /// at start and whenever the password or ACL file was reloaded. A
    /// connection already accepted keeps its user; its later publishes,
    /// subscriptions and deliveries follow the new rules.
    pub fn set_authorizer(&mut self, authorizer: Arc<Authorizer>) {
        self.authorizer = authorizer;
    }

    /// The users, ACL and policy this connection applies.
    pub fn authorizer(&self) -> &Arc<Authorizer> {
        &self.authorizer
    }

    /// The transport already authenticated the client as `user` (a TLS
    /// client certificate on a listener with `use_identity_as_username`):
    /// a CONNECT without an Authentication Method is then accepted without
    /// a password, and `user` replaces its user name for the ACL, as
    /// Mosquitto does. Call it before the first input.
    pub fn set_verified_user(&mut self, user: ByteString) {
        self.extras_mut().verified_user = Some(user);
    }

    /// The enhanced authentication or password check in progress, if any.
    fn take_pending_auth(&mut self) -> Option<PendingAuth> {
        let extras = self.extras.as_mut()?;
        extras.pending_auth.take().map(|pending| *pending)
    }

    /// Whether clients without a user name may connect on this
    /// connection, overriding the authorizer's `allow_anonymous`: the
    /// runtime calls it with the `allow_anonymous` of the connection's
    /// listener, when that listener sets one. Call it before the first
    /// input.
    pub fn set_allow_anonymous(&mut self, allow: bool) {
        self.allow_anonymous = Some(allow);
    }

    /// The authenticated user name, once CONNECT was accepted.
    pub fn user(&self) -> Option<&ByteString> {
        self.user.as_ref()
    }

    /// Authenticates `connect`: returns it if it may proceed now; `None`
    /// if it was refused or an AUTH exchange started.
    pub(super) fn authenticate(
        &mut self,
        connect: Connect,
        deadline: Instant,
        out: &mut Vec<Action>,
    ) -> Option<Connect> {
        if self.version.is_v5()
            && let Some(method) = &connect.properties.authentication_method
        {
            if &**method != scram::METHOD {
                let detail = format!(
                    "authentication method {method:?} is not supported (only {})",
                    scram::METHOD
                );
                self.deny_connect(ReasonCode::BadAuthenticationMethod, detail, out);
                return None;
            }
            self.start_scram(connect, deadline, out);
            return None;
        }
        if let Some(user) = self
            .extras
            .as_ref()
            .and_then(|extras| extras.verified_user.as_ref())
        {
            self.user = Some(ByteString::clone(user));
            return Some(connect);
        }
        if self.authorizer.checks_passwords()
            && let Some(user) = &connect.username
        {
            // A slow hash: the runtime checks it off the async threads.
            out.push(Action::CheckPassword {
                user: detach(user),
                password: connect.password.as_deref().map(Bytes::copy_from_slice),
            });
            self.extras_mut().pending_auth = Some(Box::new(PendingAuth::Password { connect }));
            self.state = State::Authenticating { deadline };
            return None;
        }
        let checked = match (connect.username.as_deref(), self.allow_anonymous) {
            (None, Some(true)) => Ok(()),
            (None, Some(false)) => Err(Refusal::AnonymousNotAllowed),
            (user, _) => self.authorizer.check_password(user, None),
        };
        self.on_password_checked(connect, checked, out)
    }

    /// Accepts `connect` (returned) or refuses it after its password check.
    fn on_password_checked(
        &mut self,
        connect: Connect,
        checked: Result<(), Refusal>,
        out: &mut Vec<Action>,
    ) -> Option<Connect> {
        match checked {
            Ok(()) => {
                self.user = connect.username.as_ref().map(detach);
                Some(connect)
            }
            Err(refusal) => {
                let reason = match refusal {
                    Refusal::BadCredentials(_) => ReasonCode::BadUserNameOrPassword,
                    Refusal::AnonymousNotAllowed => ReasonCode::NotAuthorized,
                };
                self.deny_connect(reason, refusal.to_string(), out);
                None
            }
        }
    }

    fn start_scram(&mut self, connect: Connect, deadline: Instant, out: &mut Vec<Action>) {
        let client_first = connect
            .properties
            .authentication_data
            .clone()
            .unwrap_or_default();
        // A predictable nonce would allow replays: without a random source
        // the exchange does not start (an operational failure, not the
        // client's, hence 0x88).
        let nonce = match scram::fresh_nonce() {
            Ok(nonce) => nonce,
            Err(error) => {
                let detail = format!("SCRAM needs a random nonce: {error}");
                return self.deny_connect(ReasonCode::ServerUnavailable, detail, out);
            }
        };
        let started = ScramServer::user_of(&client_first)
            .map(|user| self.authorizer.scram_lookup(&user))
            .and_then(|lookup| ScramServer::start(&client_first, lookup, &nonce));
        match started {
            Ok((server, server_first)) => {
                let reply = auth_packet(ReasonCode::ContinueAuthentication, server_first);
                out.push(Action::Send(Packet::Auth(Box::new(reply))));
                self.extras_mut().pending_auth = Some(Box::new(PendingAuth::Scram {
                    server: Box::new(server),
                    connect,
                }));
                self.state = State::Authenticating { deadline };
            }
            Err(error) => {
                self.deny_connect(ReasonCode::BadUserNameOrPassword, error.to_string(), out);
            }
        }
    }

    /// Inputs while waiting for the client's AUTH or the password check.
    pub(super) fn authenticating(
        &mut self,
        input: Input,
        deadline: Instant,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        match input {
            Input::Packet(Packet::Auth(auth)) => self.on_auth(*auth, out),
            Input::PasswordChecked(checked) => match self.take_pending_auth() {
                Some(PendingAuth::Password { connect }) => {
                    if let Some(connect) = self.on_password_checked(connect, checked, out) {
                        self.accept_connect(connect, out);
                    }
                }
                pending => {
                    debug_assert!(false, "a password check without one pending");
                    self.extras_mut().pending_auth = pending.map(Box::new);
                }
            },
            Input::Tick if now.instant < deadline => {}
            Input::Tick => {
                let reason = ReasonCode::MaximumConnectTime;
                self.end(reason, WillFate::Discard, None, now, out);
            }
            Input::DecodeError(error) => {
                self.end(error.reason_code(), WillFate::Discard, None, now, out);
            }
            Input::Packet(_) => {
                let detail = "a packet other than AUTH during enhanced authentication".into();
                self.deny_connect(ReasonCode::ProtocolError, detail, out);
            }
            Input::ServerShutdown => {
                let reason = ReasonCode::ServerShuttingDown;
                self.end(reason, WillFate::Discard, None, now, out);
            }
            Input::ConnectionLost => {
                let reason = ReasonCode::UnspecifiedError;
                self.end(reason, WillFate::Discard, None, now, out);
            }
            Input::SessionOpened { .. }
            | Input::Deliver
            | Input::Routed { .. }
            | Input::TakenOver => {}
        }
    }

    /// The client's AUTH with the client-final message.
    fn on_auth(&mut self, auth: Auth, out: &mut Vec<Action>) {
        let Some(PendingAuth::Scram { server, connect }) = self.take_pending_auth() else {
            let detail = "AUTH without an exchange in progress".into();
            return self.deny_connect(ReasonCode::ProtocolError, detail, out);
        };
        let method = auth.properties.authentication_method.as_deref();
        if auth.reason_code != ReasonCode::ContinueAuthentication || method != Some(scram::METHOD) {
            let detail = format!(
                "AUTH with reason {} and method {method:?}: expected 0x18 and {}",
                auth.reason_code,
                scram::METHOD
            );
            return self.deny_connect(ReasonCode::ProtocolError, detail, out);
        }
        let client_final = auth.properties.authentication_data.unwrap_or_default();
        let success = match server.finish(&client_final) {
            Ok(success) => success,
            Err(error) => {
                return self.deny_connect(
                    ReasonCode::BadUserNameOrPassword,
                    error.to_string(),
                    out,
                );
            }
        };
        if let Some(named) = &connect.username
            && **named != *success.user
        {
            let detail = format!(
                "the CONNECT names user {named:?} but SCRAM authenticated {:?}",
                success.user
            );
            return self.deny_connect(ReasonCode::BadUserNameOrPassword, detail, out);
        }
        self.user = Some(success.user.into());
        self.extras_mut().auth_response = Some(success.server_final.into_boxed_slice());
        self.scram_connected = true;
        self.accept_connect(connect, out);
    }

    /// AUTH once connected: re-authentication (MQTT 5 §4.12.1) with the
    /// method of the CONNECT, as the user of the connection. A failure
    /// ends the connection with DISCONNECT 0x87; an AUTH the exchange does
    /// not expect, with 0x82.
    pub(super) fn on_reauth(
        &mut self,
        auth: Auth,
        session: &mut Session,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        let method = auth.properties.authentication_method.as_deref();
        if !self.scram_connected || method != Some(scram::METHOD) {
            let detail = "AUTH without the authentication method of the CONNECT";
            return self.fail(ReasonCode::ProtocolError, detail, session, now, out);
        }
        let data = auth.properties.authentication_data.unwrap_or_default();
        let outcome = match (
            auth.reason_code,
            self.extras.as_mut().and_then(|extras| extras.reauth.take()),
        ) {
            (ReasonCode::ReAuthenticate, None) => self.start_reauth(&data),
            (ReasonCode::ContinueAuthentication, Some(server)) => {
                self.finish_reauth(*server, &data)
            }
            (reason, _) => Err((
                ReasonCode::ProtocolError,
                format!("AUTH {reason} does not continue the re-authentication"),
            )),
        };
        match outcome {
            Ok(reply) => out.push(Action::Send(Packet::Auth(Box::new(reply)))),
            Err((reason, detail)) => {
                out.push(Action::Denied {
                    denial: Denial::Connect,
                    detail: format!("re-authentication: {detail}"),
                });
                self.fail(reason, &detail, session, now, out);
            }
        }
    }

    fn start_reauth(&mut self, client_first: &[u8]) -> Result<Auth, (ReasonCode, String)> {
        let refused = |detail: String| (ReasonCode::NotAuthorized, detail);
        let nonce = scram::fresh_nonce().map_err(|error| refused(error.to_string()))?;
        let user =
            ScramServer::user_of(client_first).map_err(|error| refused(error.to_string()))?;
        if self.user.as_deref() != Some(user.as_str()) {
            return Err(refused(format!(
                "a different user ({user:?}) than the connection's"
            )));
        }
        let lookup = self.authorizer.scram_lookup(&user);
        let (server, server_first) = ScramServer::start(client_first, lookup, &nonce)
            .map_err(|error| refused(error.to_string()))?;
        self.extras_mut().reauth = Some(Box::new(server));
        Ok(auth_packet(
            ReasonCode::ContinueAuthentication,
            server_first,
        ))
    }

    fn finish_reauth(
        &mut self,
        server: ScramServer,
        client_final: &[u8],
    ) -> Result<Auth, (ReasonCode, String)> {
        let success = server
            .finish(client_final)
            .map_err(|error| (ReasonCode::NotAuthorized, error.to_string()))?;
        Ok(auth_packet(ReasonCode::Success, success.server_final))
    }

    /// Refuses the CONNECT with `reason`, counting a denial.
    fn deny_connect(&mut self, reason: ReasonCode, detail: String, out: &mut Vec<Action>) {
        out.push(Action::Denied {
            denial: Denial::Connect,
            detail,
        });
        drop(self.take_pending_auth());
        self.refuse(reason, out);
    }

    /// Whether this client may have `access` to `topic`.
    pub(super) fn authorized(&self, access: Access, topic: &str) -> bool {
        let client = Client {
            user: self.user.as_deref(),
            client_id: &self.client_id,
        };
        self.authorizer.authorize(client, access, topic)
    }

    /// Whether a delivery of `topic` must be withheld from this client.
    pub(super) fn read_denied(&self, topic: &str) -> bool {
        self.authorizer.checks_reads() && !self.authorized(Access::Read, topic)
    }

    /// Whether `topic` (a name, or a filter without `$share/GROUP/`) is
    /// within `max_topic_length` and `max_topic_levels`.
    pub(super) fn topic_within_limits(&self, topic: &str) -> bool {
        self.within_limits(topic, topic)
    }

    /// Whether `whole` is within `max_topic_length` and `levels` (the part
    /// that is matched: a shared filter without `$share/GROUP/`) within
    /// `max_topic_levels`.
    fn within_limits(&self, whole: &str, levels: &str) -> bool {
        let count = levels.bytes().filter(|&byte| byte == b'/').count() + 1;
        whole.len() <= usize::from(self.settings.max_topic_length)
            && count <= usize::from(self.settings.max_topic_levels)
    }

    /// Why a subscription to `filter` is refused, if it is: the SUBACK code
    /// and the denial to count.
    pub(super) fn subscription_refusal(
        &self,
        filter: &TopicFilter,
        session: &Session,
    ) -> Option<(ReasonCode, Action)> {
        let denied =
            |reason, denial, detail: String| Some((reason, Action::Denied { denial, detail }));
        if !self.within_limits(filter.as_str(), filter.filter()) {
            let detail = format!("filter {filter} is beyond max_topic_length or max_topic_levels");
            return denied(ReasonCode::TopicFilterInvalid, Denial::Limit, detail);
        }
        let subscriptions = session.subscriptions();
        if let Some(max) = self.settings.max_subscriptions
            && subscriptions.len() >= max
            && !subscriptions.contains_key(filter)
        {
            let detail = format!("more than max_subscriptions_per_client ({max}) subscriptions");
            return denied(ReasonCode::QuotaExceeded, Denial::Limit, detail);
        }
        if !self.authorized(Access::Subscribe, filter.filter()) {
            let detail = format!("the ACL does not allow subscribing to {filter}");
            return denied(ReasonCode::NotAuthorized, Denial::Subscribe, detail);
        }
        None
    }
}

/// An AUTH of the SCRAM-SHA-256 method carrying `data`.
fn auth_packet(reason_code: ReasonCode, data: Vec<u8>) -> Auth {
    Auth {
        reason_code,
        properties: AuthProperties {
            authentication_method: Some(scram::METHOD.into()),
            authentication_data: Some(data.into()),
            ..AuthProperties::default()
        },
        ..Auth::default()
    }
}
