//! One user's stored secret: the three forms a password file may hold, how
//! each is written, and how a plain password is checked against it.
//!
//! - `$7$<iterations>$<salt>$<hash>`: Mosquitto 2's PBKDF2-HMAC-SHA512
//!   (`mosquitto_passwd`), 64-byte hash, standard base64 with padding;
//! - `$6$<salt>$<hash>`: Mosquitto 1's salted SHA-512 (`SHA512(password ||
//!   salt)`), read so that old files keep working, never written;
//! - `$scram-sha-256$<iterations>$<salt>$<StoredKey>$<ServerKey>`: Tern's
//!   own, the SCRAM-SHA-256 credentials of RFC 5802/7677. It verifies a
//!   plain CONNECT password (derive the keys, compare in constant time)
//!   and serves MQTT 5 enhanced authentication, which `$7$` cannot.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::error::HashError;

/// PBKDF2 iterations for new SCRAM credentials (RFC 7677 asks for at least
/// 4096; more slows a brute force of a stolen file).
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 15_000;
/// Fewest iterations accepted in a file (PBKDF2 needs one; Mosquitto
/// writes 101, `tern passwd` [`DEFAULT_SCRAM_ITERATIONS`]).
pub const MIN_ITERATIONS: u32 = 1;
/// Most iterations accepted in a file, so that a crafted file cannot make
/// every CONNECT burn seconds of CPU.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// Salt length of new credentials, in bytes.
const SALT_LEN: usize = 16;

/// The SCRAM-SHA-256 credentials of one user (RFC 5802 §3): what the
/// server keeps instead of the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// `H(ClientKey)`.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredentials {
    /// The credentials for `password` with `salt` and `iterations`.
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let salted = salted_password(password, salt, iterations);
        Self::from_salted_password(&salted, salt, iterations)
    }

    /// The credentials for `password` with a fresh random salt.
    pub fn generate(password: &[u8], iterations: u32) -> Result<Self, HashError> {
        let salt = random_salt()?;
        Ok(Self::derive(password, &salt, iterations))
    }

    pub(crate) fn from_salted_password(salted: &[u8; 32], salt: &[u8], iterations: u32) -> Self {
        let client_key = hmac_sha256(salted, b"Client Key");
        Self {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac_sha256(salted, b"Server Key"),
        }
    }
}

/// `Hi(password, salt, iterations)` of RFC 5802: PBKDF2-HMAC-SHA-256.
pub(crate) fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
    out
}

/// HMAC-SHA-256 of `message` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn random_salt() -> Result<Vec<u8>, HashError> {
    let mut salt = vec![0; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|error| HashError::Random(error.to_string()))?;
    Ok(salt)
}

/// A stored password in one of the supported forms; see the module docs.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// Mosquitto 2 (`$7$`): PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        /// PBKDF2 iterations.
        iterations: u32,
        /// The salt.
        salt: Vec<u8>,
        /// The 64-byte derived key.
        hash: Vec<u8>,
    },
    /// Mosquitto 1 (`$6$`): `SHA512(password || salt)`. Read only.
    Sha512 {
        /// The salt.
        salt: Vec<u8>,
        /// The 64-byte digest.
        hash: Vec<u8>,
    },
    /// Tern's SCRAM-SHA-256 credentials.
    Scram(ScramCredentials),
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash itself is a secret worth a brute force: never logged.
        f.write_str(match self {
            Self::Pbkdf2Sha512 { .. } => "PasswordHash::Pbkdf2Sha512(..)",
            Self::Sha512 { .. } => "PasswordHash::Sha512(..)",
            Self::Scram(_) => "PasswordHash::Scram(..)",
        })
    }
}

impl PasswordHash {
    /// New SCRAM-SHA-256 credentials for `password` (the form `tern
    /// passwd` writes).
    pub fn new_scram(password: &str) -> Result<Self, HashError> {
        ScramCredentials::generate(password.as_bytes(), DEFAULT_SCRAM_ITERATIONS).map(Self::Scram)
    }

    /// Parses the part of a password-file line after `user:`.
    pub fn parse(text: &str) -> Result<Self, HashError> {
        let fields: Vec<&str> = text.split('$').collect();
        match fields.as_slice() {
            ["", "7", iterations, salt, hash] => {
                let iterations = parse_iterations(iterations)?;
                let salt = decode(salt, "salt")?;
                let hash = decode(hash, "hash")?;
                if hash.len() != 64 {
                    return Err(HashError::Length {
                        field: "hash",
                        expected: 64,
                    });
                }
                Ok(Self::Pbkdf2Sha512 {
                    iterations,
                    salt,
                    hash,
                })
            }
            ["", "6", salt, hash] => {
                let hash = decode(hash, "hash")?;
                if hash.len() != 64 {
                    return Err(HashError::Length {
                        field: "hash",
                        expected: 64,
                    });
                }
                Ok(Self::Sha512 {
                    salt: decode(salt, "salt")?,
                    hash,
                })
            }
            [
                "",
                "scram-sha-256",
                iterations,
                salt,
                stored_key,
                server_key,
            ] => Ok(Self::Scram(ScramCredentials {
                iterations: parse_iterations(iterations)?,
                salt: decode(salt, "salt")?,
                stored_key: decode_key(stored_key, "StoredKey")?,
                server_key: decode_key(server_key, "ServerKey")?,
            })),
            ["", kind, ..] if ["7", "6", "scram-sha-256"].contains(kind) => {
                Err(HashError::Fields(kind.to_string()))
            }
            ["", kind, ..] => Err(HashError::UnknownKind(kind.to_string())),
            _ => Err(HashError::NotAHash),
        }
    }

    /// Whether `password` is the one stored, compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut derived = [0; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut derived);
                derived.ct_eq(hash.as_slice()).into()
            }
            Self::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                digest.finalize().as_slice().ct_eq(hash.as_slice()).into()
            }
            Self::Scram(stored) => {
                let derived = ScramCredentials::derive(password, &stored.salt, stored.iterations);
                derived.stored_key.ct_eq(&stored.stored_key).into()
            }
        }
    }

    /// The SCRAM credentials, if this hash can serve SCRAM-SHA-256.
    pub fn scram(&self) -> Option<&ScramCredentials> {
        match self {
            Self::Scram(credentials) => Some(credentials),
            Self::Pbkdf2Sha512 { .. } | Self::Sha512 { .. } => None,
        }
    }
}

impl std::fmt::Display for PasswordHash {
    /// The form written after `user:` in a password file.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => write!(
                f,
                "$7${iterations}${}${}",
                STANDARD.encode(salt),
                STANDARD.encode(hash)
            ),
            Self::Sha512 { salt, hash } => {
                write!(f, "$6${}${}", STANDARD.encode(salt), STANDARD.encode(hash))
            }
            Self::Scram(c) => write!(
                f,
                "$scram-sha-256${}${}${}${}",
                c.iterations,
                STANDARD.encode(&c.salt),
                STANDARD.encode(c.stored_key),
                STANDARD.encode(c.server_key)
            ),
        }
    }
}

fn parse_iterations(text: &str) -> Result<u32, HashError> {
    text.parse()
        .ok()
        .filter(|n| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(n))
        .ok_or_else(|| HashError::Iterations(text.to_string()))
}

fn decode(text: &str, field: &'static str) -> Result<Vec<u8>, HashError> {
    STANDARD
        .decode(text)
        .map_err(|_| HashError::Base64(field))
        .and_then(|bytes| {
            if bytes.is_empty() {
                Err(HashError::Base64(field))
            } else {
                Ok(bytes)
            }
        })
}

fn decode_key(text: &str, field: &'static str) -> Result<[u8; 32], HashError> {
    decode(text, field)?
        .try_into()
        .map_err(|_| HashError::Length {
            field,
            expected: 32,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generated by Mosquitto 2.0's `mosquitto_passwd -b`: alice/secret and
    /// bob/"p@ss word" (`$7$`, 101 iterations), carol/legacy (`-H sha512`:
    /// `$6$`).
    const MOSQUITTO_7: &str = include_str!("../tests/fixtures/mosquitto.passwd");

    fn fixture_hash(user: &str) -> PasswordHash {
        let line = MOSQUITTO_7
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{user}:")))
            .expect("user in the fixture");
        PasswordHash::parse(line).unwrap()
    }

    #[test]
    fn verifies_mosquitto_passwd_lines() {
        let alice = fixture_hash("alice");
        assert!(matches!(alice, PasswordHash::Pbkdf2Sha512 { .. }));
        assert!(alice.verify(b"secret"));
        assert!(!alice.verify(b"Secret"));
        let bob = fixture_hash("bob");
        assert!(bob.verify(b"p@ss word"));
        assert!(!bob.verify(b"secret"));
        let carol = fixture_hash("carol");
        assert!(matches!(carol, PasswordHash::Sha512 { .. }));
        assert!(carol.verify(b"legacy"));
        assert!(!carol.verify(b"legacy2"));
    }

    #[test]
    fn mosquitto_lines_round_trip() {
        for line in MOSQUITTO_7.lines().filter(|l| !l.is_empty()) {
            let (_, hash) = line.split_once(':').unwrap();
            assert_eq!(PasswordHash::parse(hash).unwrap().to_string(), hash);
        }
    }

    #[test]
    fn verifies_legacy_sha512() {
        let salt = b"0123456789ab";
        let mut digest = Sha512::new();
        digest.update(b"hunter2");
        digest.update(salt);
        let line = format!(
            "$6${}${}",
            STANDARD.encode(salt),
            STANDARD.encode(digest.finalize())
        );
        let hash = PasswordHash::parse(&line).unwrap();
        assert!(hash.verify(b"hunter2"));
        assert!(!hash.verify(b"hunter3"));
    }

    #[test]
    fn scram_credentials_verify_and_round_trip() {
        let hash = PasswordHash::new_scram("correct horse").unwrap();
        let text = hash.to_string();
        assert!(text.starts_with("$scram-sha-256$15000$"), "{text}");
        let parsed = PasswordHash::parse(&text).unwrap();
        assert_eq!(parsed, hash);
        assert!(parsed.verify(b"correct horse"));
        assert!(!parsed.verify(b"correct horse "));
        let other = PasswordHash::new_scram("correct horse").unwrap();
        assert_ne!(other.to_string(), text, "a fresh salt each time");
    }

    #[test]
    fn rfc7677_keys() {
        // RFC 7677 §3: user "user", password "pencil", 4096 iterations.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credentials = ScramCredentials::derive(b"pencil", &salt, 4096);
        let salted = salted_password(b"pencil", &salt, 4096);
        let client_key = hmac_sha256(&salted, b"Client Key");
        // ClientProof of the RFC's exchange XOR ClientSignature = ClientKey;
        // checked end to end in scram.rs. Here: the ServerKey gives the
        // RFC's server signature.
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let signature = hmac_sha256(&credentials.server_key, auth_message.as_bytes());
        assert_eq!(
            STANDARD.encode(signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(
            credentials.stored_key,
            <[u8; 32]>::from(Sha256::digest(client_key))
        );
    }

    #[test]
    fn malformed_hashes_say_what_is_wrong() {
        let cases = [
            ("plain", "not a password hash"),
            ("$5$abc$def", "$5$"),
            ("$7$101$c2FsdA==", "fields"),
            ("$7$0$c2FsdA==$aGFzaA==", "iterations"),
            ("$7$101$!!!$aGFzaA==", "salt"),
            ("$7$101$c2FsdA==$aGFzaA==", "64 bytes"),
            ("$scram-sha-256$4096$c2FsdA==$aGFzaA==$aGFzaA==", "32 bytes"),
        ];
        for (text, expected) in cases {
            let message = PasswordHash::parse(text).unwrap_err().to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
    }
}
