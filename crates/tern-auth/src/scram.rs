//! The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as a sans-IO
//! state machine, for MQTT 5 enhanced authentication with the method
//! `SCRAM-SHA-256`.
//!
//! The exchange, each message carried as Authentication Data:
//!
//! ```text
//! client                                   server
//! CONNECT  n,,n=user,r=<cnonce>      ──>   ScramServer::start
//!                                    <──   AUTH 0x18  r=<cnonce><snonce>,s=<salt>,i=<iterations>
//! AUTH 0x18 c=biws,r=<nonce>,p=<proof> ──> ScramServer::finish
//!                                    <──   CONNACK 0x00  v=<server signature>
//! ```
//!
//! The caller supplies the user's credentials (looked up by the name in the
//! first message) and the server nonce; the machine never reads a clock,
//! a file or a random source. An unknown user gets made-up credentials
//! derived from a per-server secret, so that the exchange looks the same as
//! for a real user and fails only at the proof: SCRAM does not tell an
//! attacker which user names exist (RFC 5802 §5.1). Channel binding is not
//! offered (`p=` is refused); an authorization identity (`a=`) is refused.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::hash::{DEFAULT_SCRAM_ITERATIONS, ScramCredentials, hmac_sha256};

/// The MQTT 5 Authentication Method name.
pub const METHOD: &str = "SCRAM-SHA-256";

/// Why a SCRAM exchange failed. The client is refused (CONNACK 0x86); the
/// message is for the broker's log.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScramError {
    /// Not UTF-8 or not `attr=value` pairs as RFC 5802 §7 writes them.
    #[error("malformed SCRAM {0} message: the client's SCRAM library is not RFC 5802 compliant")]
    Malformed(&'static str),
    /// The client asked for channel binding, which is not offered.
    #[error(
        "the client requires channel binding (p=), which Tern does not offer; use SCRAM-SHA-256 without -PLUS"
    )]
    ChannelBinding,
    /// An authorization identity other than the user.
    #[error(
        "the client sent an authorization identity (a=), which Tern does not support; leave it out"
    )]
    AuthorizationIdentity,
    /// The client-final message does not continue the exchange.
    #[error("the client-final message has a different nonce or channel binding than the exchange")]
    Mismatch,
    /// Wrong password or unknown user.
    #[error("wrong password or unknown user {0:?}")]
    BadProof(String),
}

/// What a user name resolves to when the exchange starts.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The user's credentials.
    Found(ScramCredentials),
    /// No such user (or none with SCRAM credentials): `secret` is a
    /// per-server secret from which made-up credentials are derived.
    Unknown {
        /// Random bytes drawn once per server.
        secret: [u8; 32],
    },
}

/// An exchange after the server-first message; see the module docs.
#[derive(Debug)]
pub struct ScramServer {
    user: String,
    known: bool,
    credentials: ScramCredentials,
    gs2_header: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

/// A successful exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramSuccess {
    /// The authenticated user.
    pub user: String,
    /// The server-final message (`v=...`), sent in the CONNACK.
    pub server_final: Vec<u8>,
}

impl ScramServer {
    /// The user name of a client-first message, to look its credentials up.
    pub fn user_of(client_first: &[u8]) -> Result<String, ScramError> {
        parse_client_first(client_first).map(|first| first.user)
    }

    /// Starts an exchange with the client-first message: returns the
    /// machine and the server-first message. `server_nonce` is random
    /// printable text (see [`fresh_nonce`]).
    pub fn start(
        client_first: &[u8],
        lookup: Lookup,
        server_nonce: &str,
    ) -> Result<(Self, Vec<u8>), ScramError> {
        let first = parse_client_first(client_first)?;
        let (known, credentials) = match lookup {
            Lookup::Found(credentials) => (true, credentials),
            Lookup::Unknown { secret } => (false, made_up(&secret, &first.user)),
        };
        let nonce = format!("{}{server_nonce}", first.client_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&credentials.salt),
            credentials.iterations
        );
        let machine = Self {
            user: first.user,
            known,
            credentials,
            gs2_header: first.gs2_header,
            nonce,
            client_first_bare: first.bare,
            server_first: server_first.clone(),
        };
        Ok((machine, server_first.into_bytes()))
    }

    /// The user this exchange is for (not yet authenticated).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Checks the client-final message: the user is authenticated if its
    /// proof is right.
    pub fn finish(self, client_final: &[u8]) -> Result<ScramSuccess, ScramError> {
        let text =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("client-final"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("client-final"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("client-final"))?;
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("client-final"))?;
        if STANDARD.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes())
            || nonce != self.nonce
        {
            return Err(ScramError::Mismatch);
        }
        let proof: [u8; 32] = STANDARD
            .decode(proof)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(ScramError::Malformed("client-final"))?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let signature = hmac_sha256(&self.credentials.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (key, (p, s)) in client_key.iter_mut().zip(proof.iter().zip(signature)) {
            *key = p ^ s;
        }
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let matches: bool = stored_key.ct_eq(&self.credentials.stored_key).into();
        if !(matches && self.known) {
            return Err(ScramError::BadProof(self.user));
        }
        let server_signature = hmac_sha256(&self.credentials.server_key, auth_message.as_bytes());
        Ok(ScramSuccess {
            user: self.user,
            server_final: format!("v={}", STANDARD.encode(server_signature)).into_bytes(),
        })
    }
}

/// The client side of SCRAM-SHA-256, for Tern's clients and tests: the
/// same messages as the module docs show, from the other end.
#[derive(Debug)]
pub struct ScramClient {
    password: String,
    client_first_bare: String,
    client_nonce: String,
    expected_server_final: Option<Vec<u8>>,
}

impl ScramClient {
    /// An exchange for `user` with `password`; `nonce` is random printable
    /// text without commas.
    pub fn new(user: &str, password: &str, nonce: &str) -> Self {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        Self {
            password: password.to_string(),
            client_first_bare: format!("n={user},r={nonce}"),
            client_nonce: nonce.to_string(),
            expected_server_final: None,
        }
    }

    /// The client-first message (the CONNECT's Authentication Data).
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The client-final message answering `server_first`.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let malformed = ScramError::Malformed("server-first");
        let text = std::str::from_utf8(server_first).map_err(|_| malformed.clone())?;
        let mut attributes = text.split(',');
        let mut next = |prefix: &str| {
            attributes
                .next()
                .and_then(|attribute| attribute.strip_prefix(prefix))
                .ok_or(malformed.clone())
        };
        let nonce = next("r=")?;
        let salt = STANDARD
            .decode(next("s=")?)
            .map_err(|_| malformed.clone())?;
        let iterations: u32 = next("i=")?.parse().map_err(|_| malformed.clone())?;
        if !nonce.starts_with(&self.client_nonce) || iterations == 0 {
            return Err(ScramError::Mismatch);
        }
        let salted = crate::hash::salted_password(self.password.as_bytes(), &salt, iterations);
        let credentials = ScramCredentials::from_salted_password(&salted, &salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = hmac_sha256(&credentials.stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_signature = hmac_sha256(&credentials.server_key, auth_message.as_bytes());
        self.expected_server_final =
            Some(format!("v={}", STANDARD.encode(server_signature)).into_bytes());
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server knew the credentials.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let expected = self.expected_server_final.as_deref().unwrap_or_default();
        if bool::from(expected.ct_eq(server_final)) && !expected.is_empty() {
            Ok(())
        } else {
            Err(ScramError::BadProof("(the server)".into()))
        }
    }
}

/// A server nonce: 18 random bytes in base64 (printable, no comma).
pub fn fresh_nonce() -> Result<String, crate::HashError> {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).map_err(|error| crate::HashError::Random(error.to_string()))?;
    Ok(STANDARD.encode(bytes))
}

/// Credentials for a user who does not exist, the same on every attempt.
fn made_up(secret: &[u8; 32], user: &str) -> ScramCredentials {
    let salt = hmac_sha256(secret, user.as_bytes());
    ScramCredentials {
        iterations: DEFAULT_SCRAM_ITERATIONS,
        salt: salt[..16].to_vec(),
        stored_key: hmac_sha256(secret, b"stored"),
        server_key: hmac_sha256(secret, b"server"),
    }
}

struct ClientFirst {
    gs2_header: String,
    bare: String,
    user: String,
    client_nonce: String,
}

fn parse_client_first(message: &[u8]) -> Result<ClientFirst, ScramError> {
    let malformed = ScramError::Malformed("client-first");
    let text = std::str::from_utf8(message).map_err(|_| malformed.clone())?;
    let mut parts = text.splitn(3, ',');
    let (Some(binding), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed);
    };
    match binding {
        "n" | "y" => {}
        flag if flag.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(malformed),
    }
    if !authzid.is_empty() {
        return Err(ScramError::AuthorizationIdentity);
    }
    let mut attributes = bare.split(',');
    let user = attributes
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .and_then(unescape)
        .ok_or(malformed.clone())?;
    let client_nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .filter(|nonce| !nonce.is_empty())
        .ok_or(malformed)?;
    Ok(ClientFirst {
        gs2_header: format!("{binding},{authzid},"),
        bare: bare.to_string(),
        user,
        client_nonce: client_nonce.to_string(),
    })
}

/// A `saslname`: `=2C` is a comma, `=3D` an equals sign, nothing else may
/// follow `=`.
fn unescape(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        out.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3, the whole exchange.
    #[test]
    fn rfc7677_exchange() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credentials = ScramCredentials::derive(b"pencil", &salt, 4096);
        let (server, server_first) = ScramServer::start(
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            Lookup::Found(credentials),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
        assert_eq!(
            server_first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let success = server
            .finish(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(success.user, "user");
        assert_eq!(
            success.server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn rfc7677_client() {
        let mut client = ScramClient::new("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(client.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let client_final = client
            .client_final(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        assert_eq!(
            client_final,
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(
            client
                .verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .is_ok()
        );
        assert!(client.verify_server_final(b"v=AAAA").is_err());
    }

    #[test]
    fn client_and_server_agree_on_generated_credentials() {
        let credentials = ScramCredentials::generate(b"s3cret", 4096).unwrap();
        let mut client = ScramClient::new("a,b", "s3cret", "nonce1");
        let (server, server_first) =
            ScramServer::start(&client.client_first(), Lookup::Found(credentials), "n2").unwrap();
        assert_eq!(server.user(), "a,b");
        let client_final = client.client_final(&server_first).unwrap();
        let success = server.finish(&client_final).unwrap();
        client.verify_server_final(&success.server_final).unwrap();
    }

    fn rfc_server(lookup: Lookup) -> ScramServer {
        ScramServer::start(b"n,,n=user,r=abc", lookup, "def")
            .unwrap()
            .0
    }

    fn rfc_credentials() -> ScramCredentials {
        ScramCredentials::derive(b"pencil", b"salt", 4096)
    }

    #[test]
    fn a_wrong_proof_or_unknown_user_fails() {
        let wrong = STANDARD.encode([7u8; 32]);
        let message = format!("c=biws,r=abcdef,p={wrong}");
        let error = rfc_server(Lookup::Found(rfc_credentials()))
            .finish(message.as_bytes())
            .unwrap_err();
        assert_eq!(error, ScramError::BadProof("user".into()));
        let secret = [9; 32];
        let unknown = rfc_server(Lookup::Unknown { secret });
        assert_eq!(
            unknown.finish(message.as_bytes()).unwrap_err(),
            ScramError::BadProof("user".into())
        );
    }

    #[test]
    fn unknown_users_get_stable_made_up_salts() {
        let secret = [1; 32];
        let first = ScramServer::start(b"n,,n=ghost,r=a", Lookup::Unknown { secret }, "b").unwrap();
        let again = ScramServer::start(b"n,,n=ghost,r=a", Lookup::Unknown { secret }, "b").unwrap();
        assert_eq!(first.1, again.1);
        let other =
            ScramServer::start(b"n,,n=ghost2,r=a", Lookup::Unknown { secret }, "b").unwrap();
        assert_ne!(first.1, other.1);
    }

    #[test]
    fn a_replayed_nonce_or_binding_is_a_mismatch() {
        let proof = STANDARD.encode([0u8; 32]);
        for message in [
            format!("c=biws,r=abcXXX,p={proof}"),
            format!("c=eSws,r=abcdef,p={proof}"),
        ] {
            let server = rfc_server(Lookup::Found(rfc_credentials()));
            assert_eq!(
                server.finish(message.as_bytes()).unwrap_err(),
                ScramError::Mismatch
            );
        }
    }

    #[test]
    fn client_first_errors() {
        let lookup = || Lookup::Unknown { secret: [0; 32] };
        let cases: [(&[u8], ScramError); 6] = [
            (b"p=tls-unique,,n=u,r=a", ScramError::ChannelBinding),
            (b"n,a=admin,n=u,r=a", ScramError::AuthorizationIdentity),
            (b"n,,r=a", ScramError::Malformed("client-first")),
            (b"n,,n=u", ScramError::Malformed("client-first")),
            (b"n,,n=u=2X,r=a", ScramError::Malformed("client-first")),
            (b"\xff", ScramError::Malformed("client-first")),
        ];
        for (message, expected) in cases {
            assert_eq!(
                ScramServer::start(message, lookup(), "b").unwrap_err(),
                expected
            );
        }
        assert_eq!(
            ScramServer::user_of(b"n,,n=a=2Cb=3Dc,r=x").unwrap(),
            "a,b=c"
        );
    }

    #[test]
    fn nonces_are_fresh() {
        assert_ne!(fresh_nonce().unwrap(), fresh_nonce().unwrap());
    }
}
