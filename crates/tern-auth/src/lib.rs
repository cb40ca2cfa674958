//! Who may connect to a Tern broker and what they may do: authentication
//! and authorization as pure code. No sockets, no tokio, no clock: this
//! crate reads the files it is given and answers questions; tern-broker's
//! protocol asks them and turns the answers into reason codes.
//!
//! - [`hash`]: one stored password. Mosquitto's `$7$` (PBKDF2-SHA512,
//!   written by `mosquitto_passwd`) and `$6$` (old salted SHA-512, read
//!   only) so that Mosquitto users can bring their files, and Tern's own
//!   `$scram-sha-256$` credentials, which check a plain password and also
//!   serve SCRAM.
//! - [`passwd`]: a password file, `user:hash` per line.
//! - [`scram`]: the server side of SCRAM-SHA-256 (RFC 5802/7677) as a
//!   sans-IO state machine, for MQTT 5 enhanced authentication.
//! - [`acl`]: an ACL file (Mosquitto's grammar, extended with client
//!   identifiers and a subscribe permission) and its decisions.
//! - [`Authorizer`]: all of it together with the broker's policy
//!   (`allow_anonymous`, `acl_default`). The broker holds one behind an
//!   `Arc` and swaps it whole when the files are reloaded, so a connection
//!   always sees one consistent set of users and rules.
//!
//! ```
//! use tern_auth::{Access, AuthSettings, Authorizer, Client};
//!
//! let authorizer = Authorizer::new(AuthSettings {
//!     allow_anonymous: true,
//!     ..AuthSettings::default()
//! })?;
//! assert!(authorizer.check_password(None, None).is_ok());
//! let client = Client { user: None, client_id: "c1" };
//! assert!(authorizer.authorize(client, Access::Write, "a/b"));
//! # Ok::<(), tern_auth::FileError>(())
//! ```

pub mod acl;
mod error;
pub mod hash;
pub mod passwd;
pub mod scram;

use std::path::PathBuf;

pub use acl::{Access, Acl, Client};
pub use error::{FileError, HashError};
pub use hash::{PasswordHash, ScramCredentials};
pub use passwd::PasswordFile;
pub use scram::{ScramClient, ScramError, ScramServer, ScramSuccess};

/// What the broker's configuration says about authentication and
/// authorization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSettings {
    /// The password file; `None`: no passwords are checked.
    pub password_file: Option<PathBuf>,
    /// The ACL file; `None`: every client may do everything.
    pub acl_file: Option<PathBuf>,
    /// Whether a client without a user name may connect.
    pub allow_anonymous: bool,
    /// The decision when no ACL rule matches (only with an ACL file).
    pub acl_default_allow: bool,
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Unknown user, wrong or missing password (MQTT 5: 0x86; 3.1.1: 4).
    #[error("bad user name or password for user {0:?}")]
    BadCredentials(String),
    /// No user name, and anonymous clients are not allowed (MQTT 5: 0x87;
    /// 3.1.1: 5, as Mosquitto answers).
    #[error("anonymous clients are not allowed (allow_anonymous is false)")]
    AnonymousNotAllowed,
}

/// The users, rules and policy in force; see the crate docs.
#[derive(Debug)]
pub struct Authorizer {
    settings: AuthSettings,
    passwords: Option<PasswordFile>,
    acl: Option<Acl>,
    /// Made-up SCRAM credentials of unknown users derive from this.
    scram_secret: [u8; 32],
}

impl Authorizer {
    /// Loads the files `settings` names.
    pub fn new(settings: AuthSettings) -> Result<Self, FileError> {
        let passwords = settings
            .password_file
            .as_deref()
            .map(PasswordFile::load)
            .transpose()?;
        let acl = settings.acl_file.as_deref().map(Acl::load).transpose()?;
        let mut scram_secret = [0; 32];
        getrandom::fill(&mut scram_secret).map_err(|error| FileError::Random(error.to_string()))?;
        Ok(Self {
            settings,
            passwords,
            acl,
            scram_secret,
        })
    }

    /// An authorizer from files already parsed (for tests and embedders);
    /// [`Authorizer::reload`] reads the files `settings` names.
    pub fn from_parts(
        settings: AuthSettings,
        passwords: Option<PasswordFile>,
        acl: Option<Acl>,
    ) -> Self {
        let mut scram_secret = [0; 32];
        // Without a random source unknown users get made-up credentials
        // from a zero secret: still refused, only easier to enumerate.
        let _ = getrandom::fill(&mut scram_secret);
        Self {
            settings,
            passwords,
            acl,
            scram_secret,
        }
    }

    /// Everyone may connect and do everything: no password file, no ACL.
    pub fn allow_all() -> Self {
        Self {
            settings: AuthSettings {
                allow_anonymous: true,
                ..AuthSettings::default()
            },
            passwords: None,
            acl: None,
            // No user has SCRAM credentials, so every exchange fails at
            // the proof whatever this is.
            scram_secret: [0; 32],
        }
    }

    /// The same settings, files read again: for a reload. On error the
    /// caller keeps `self`.
    pub fn reload(&self) -> Result<Self, FileError> {
        Self::new(self.settings.clone())
    }

    /// The settings this was loaded with.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Number of users in the password file (0 without one).
    pub fn user_count(&self) -> usize {
        self.passwords.as_ref().map_or(0, PasswordFile::len)
    }

    /// Whether a CONNECT with this user name and password may connect.
    /// Without a password file a user name is taken at its word (as
    /// Mosquitto does) and only `allow_anonymous` decides.
    pub fn check_password(
        &self,
        user: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<(), Refusal> {
        let (Some(passwords), Some(user)) = (&self.passwords, user) else {
            return if user.is_some() || self.settings.allow_anonymous {
                Ok(())
            } else {
                Err(Refusal::AnonymousNotAllowed)
            };
        };
        let known = passwords.get(user);
        match (known, password) {
            (Some(hash), Some(password)) if hash.verify(password) => Ok(()),
            _ => Err(Refusal::BadCredentials(user.to_string())),
        }
    }

    /// Whether [`Authorizer::check_password`] of a user name derives a
    /// hash (milliseconds of CPU): there is a password file.
    pub fn checks_passwords(&self) -> bool {
        self.passwords.is_some()
    }

    /// Whether anonymous clients may connect.
    pub fn allows_anonymous(&self) -> bool {
        self.settings.allow_anonymous
    }

    /// What SCRAM needs to start an exchange for `user`: its credentials,
    /// or made-up ones when it has none (unknown, or a Mosquitto hash).
    pub fn scram_lookup(&self, user: &str) -> scram::Lookup {
        match self
            .passwords
            .as_ref()
            .and_then(|file| file.get(user))
            .and_then(PasswordHash::scram)
        {
            Some(credentials) => scram::Lookup::Found(credentials.clone()),
            None => scram::Lookup::Unknown {
                secret: self.scram_secret,
            },
        }
    }

    /// Whether `client` may have `access` to `topic` (a topic name for
    /// read and write; a filter without `$share/GROUP/` for subscribe).
    pub fn authorize(&self, client: Client<'_>, access: Access, topic: &str) -> bool {
        match &self.acl {
            None => true,
            Some(acl) => acl
                .decide(client, access, topic)
                .unwrap_or(self.settings.acl_default_allow),
        }
    }

    /// True if some message could be withheld from a subscriber: without
    /// an ACL file the read check is skipped.
    pub fn checks_reads(&self) -> bool {
        self.acl.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn passwords_and_anonymous() {
        let passwords = file(include_str!("../tests/fixtures/mosquitto.passwd"));
        let settings = AuthSettings {
            password_file: Some(passwords.path().to_path_buf()),
            ..AuthSettings::default()
        };
        let authorizer = Authorizer::new(settings).unwrap();
        assert_eq!(authorizer.user_count(), 3);
        assert_eq!(
            authorizer.check_password(Some("alice"), Some(b"secret")),
            Ok(())
        );
        let bad = Err(Refusal::BadCredentials("alice".into()));
        assert_eq!(authorizer.check_password(Some("alice"), Some(b"x")), bad);
        assert_eq!(authorizer.check_password(Some("alice"), None), bad);
        assert_eq!(
            authorizer.check_password(Some("zoe"), Some(b"secret")),
            Err(Refusal::BadCredentials("zoe".into()))
        );
        assert_eq!(
            authorizer.check_password(None, None),
            Err(Refusal::AnonymousNotAllowed)
        );
        assert!(matches!(
            authorizer.scram_lookup("alice"),
            scram::Lookup::Unknown { .. }
        ));
    }

    #[test]
    fn acl_default_applies_only_with_an_acl_file() {
        let open = Authorizer::new(AuthSettings::default()).unwrap();
        let client = Client {
            user: Some("u"),
            client_id: "c",
        };
        assert!(open.authorize(client, Access::Write, "x"));
        assert!(!open.checks_reads());
        let acl = file("user u\ntopic write x\n");
        for default_allow in [false, true] {
            let authorizer = Authorizer::new(AuthSettings {
                acl_file: Some(acl.path().to_path_buf()),
                acl_default_allow: default_allow,
                ..AuthSettings::default()
            })
            .unwrap();
            assert!(authorizer.authorize(client, Access::Write, "x"));
            assert_eq!(
                authorizer.authorize(client, Access::Write, "y"),
                default_allow
            );
        }
    }

    #[test]
    fn reload_reads_the_files_again() {
        let mut acl = file("topic write x\n");
        let authorizer = Authorizer::new(AuthSettings {
            acl_file: Some(acl.path().to_path_buf()),
            ..AuthSettings::default()
        })
        .unwrap();
        let client = Client {
            user: None,
            client_id: "c",
        };
        assert!(authorizer.authorize(client, Access::Write, "x"));
        acl.as_file_mut().set_len(0).unwrap();
        std::fs::write(acl.path(), "topic write y\n").unwrap();
        let reloaded = authorizer.reload().unwrap();
        assert!(!reloaded.authorize(client, Access::Write, "x"));
        assert!(reloaded.authorize(client, Access::Write, "y"));
        std::fs::write(acl.path(), "nonsense\n").unwrap();
        assert!(authorizer.reload().is_err());
    }
}
