//! [`PasswordFile`]: the users a broker accepts and their stored
//! passwords, one `user:hash` per line, as Mosquitto writes them.
//!
//! The format is Mosquitto's, so its files work unchanged: empty lines and
//! lines starting with `#` are skipped, a user name is everything before
//! the first `:` and the hash (see [`PasswordHash`]) everything after. A
//! user named twice, an empty name or a hash that cannot be read is an
//! error naming the file and line: a broker refuses to start (or keeps its
//! old users on reload) rather than silently lock someone out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::FileError;
use crate::hash::PasswordHash;

/// The users of a password file, in file order; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    entries: Vec<(String, PasswordHash)>,
    index: HashMap<String, usize>,
}

impl PasswordFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text`; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, FileError> {
        let mut file = Self::default();
        for (number, line) in text.lines().enumerate() {
            let error = |message: String| FileError::Password {
                path: PathBuf::from(path),
                line: number + 1,
                message,
            };
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(error(
                    "expected `user:hash`; create entries with `tern passwd FILE USER`".into(),
                ));
            };
            if user.is_empty() {
                return Err(error("the user name is empty: write `user:hash`".into()));
            }
            if file.index.contains_key(user) {
                return Err(error(format!(
                    "user {user:?} appears twice: delete one of the lines"
                )));
            }
            let hash = PasswordHash::parse(hash)
                .map_err(|cause| error(format!("user {user:?}: {cause}")))?;
            file.set(user, hash);
        }
        Ok(file)
    }

    /// The stored password of `user`.
    pub fn get(&self, user: &str) -> Option<&PasswordHash> {
        self.index.get(user).map(|&at| &self.entries[at].1)
    }

    /// Adds `user` or replaces its password.
    pub fn set(&mut self, user: &str, hash: PasswordHash) {
        match self.index.get(user) {
            Some(&at) => self.entries[at].1 = hash,
            None => {
                self.index.insert(user.to_string(), self.entries.len());
                self.entries.push((user.to_string(), hash));
            }
        }
    }

    /// Removes `user`; false if there was none.
    pub fn remove(&mut self, user: &str) -> bool {
        let Some(at) = self.index.remove(user) else {
            return false;
        };
        self.entries.remove(at);
        for position in self.index.values_mut() {
            if *position > at {
                *position -= 1;
            }
        }
        true
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True without users.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file's text: one `user:hash` line per user, in order.
    pub fn to_text(&self) -> String {
        self.entries
            .iter()
            .map(|(user, hash)| format!("{user}:{hash}\n"))
            .collect()
    }

    /// Writes the file at `path`, through a temporary file renamed over
    /// it, so a reader never sees half a file.
    pub fn save(&self, path: &Path) -> Result<(), FileError> {
        let write_error = |source| FileError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        std::fs::write(&temporary, self.to_text()).map_err(write_error)?;
        // Hashes are worth a brute force: readable by the owner only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let owner_only = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(&temporary, owner_only).map_err(write_error)?;
        }
        std::fs::rename(&temporary, path).map_err(write_error)
    }
}

/// Whether `user` can be written in a password file.
pub fn valid_user_name(user: &str) -> bool {
    !user.is_empty() && !user.contains([':', '\n', '\r'])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOSQUITTO: &str = include_str!("../tests/fixtures/mosquitto.passwd");

    #[test]
    fn reads_a_mosquitto_file() {
        let file = PasswordFile::parse(MOSQUITTO, Path::new("pw")).unwrap();
        assert_eq!(file.len(), 3);
        assert!(file.get("alice").unwrap().verify(b"secret"));
        assert!(file.get("carol").unwrap().verify(b"legacy"));
        assert!(file.get("dave").is_none());
        assert_eq!(file.to_text(), MOSQUITTO, "written back unchanged");
    }

    #[test]
    fn set_remove_and_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let mut file = PasswordFile::parse(MOSQUITTO, &path).unwrap();
        assert!(file.remove("alice"));
        assert!(!file.remove("alice"));
        file.set("dave", PasswordHash::new_scram("pw").unwrap());
        file.set("bob", PasswordHash::new_scram("new").unwrap());
        file.save(&path).unwrap();
        let loaded = PasswordFile::load(&path).unwrap();
        assert_eq!(loaded, file);
        assert!(loaded.get("bob").unwrap().verify(b"new"));
        assert!(loaded.get("dave").unwrap().verify(b"pw"));
        assert!(loaded.get("carol").unwrap().verify(b"legacy"));
        let users: Vec<_> = loaded
            .to_text()
            .lines()
            .map(|l| l[..4].to_string())
            .collect();
        assert_eq!(users, ["bob:", "caro", "dave"]);
    }

    #[test]
    fn errors_name_file_line_and_fix() {
        let alice = MOSQUITTO.lines().next().unwrap();
        let cases = [
            ("# users\n\nnocolon\n", 3, "user:hash"),
            (":$7$1$a$b\n", 1, "user name is empty"),
            (&format!("{alice}\n{alice}\n"), 2, "appears twice"),
            ("x:$7$101$c2FsdA==\n", 1, "tern passwd"),
        ];
        for (text, line, expected) in cases {
            let error = PasswordFile::parse(text, Path::new("/etc/tern/passwd")).unwrap_err();
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("/etc/tern/passwd:{line}: ")),
                "{message}"
            );
            assert!(message.contains(expected), "{message}");
        }
        let missing = PasswordFile::load(Path::new("/nonexistent/passwd")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/passwd"));
    }
}
