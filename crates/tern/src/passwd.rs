//! `tern passwd FILE USER`: adds a user to a password file or changes its
//! password, modelled on `mosquitto_passwd`. New passwords are stored as
//! SCRAM-SHA-256 credentials (`$scram-sha-256$...`), which the broker
//! checks for plain CONNECT passwords and for MQTT 5 enhanced
//! authentication; other users' lines (Mosquitto's `$7$` and `$6$`
//! included) are kept as they are.
//!
//! The password comes from `--password` or, as in `mosquitto_passwd -b`,
//! a third argument after `-b` (both visible to other local users in the
//! process list: for throwaway setups), from the first line of
//! standard input with `--stdin` (for scripts), or from a prompt on the
//! terminal, asked twice.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use tern_auth::passwd::valid_user_name;
use tern_auth::{PasswordFile, PasswordHash};

/// Flags of `tern passwd`.
#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// Create the file, replacing any file of that name.
    #[arg(short = 'c', long = "create", conflicts_with = "delete")]
    create: bool,
    /// Delete USER instead of setting its password.
    #[arg(short = 'D', long = "delete")]
    delete: bool,
    /// The password (visible in the process list; prefer --stdin in scripts).
    #[arg(long, value_name = "PASSWORD", conflicts_with_all = ["stdin", "delete", "batch"])]
    password: Option<String>,
    /// mosquitto_passwd's batch form: the password is the third argument
    /// (`tern passwd -b FILE USER PASSWORD`; visible in the process list).
    #[arg(short = 'b', requires = "batch_password", conflicts_with_all = ["stdin", "delete"])]
    batch: bool,
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "delete")]
    stdin: bool,
    /// The password file.
    file: PathBuf,
    /// The user to add, change or delete.
    user: String,
    /// The password, with -b.
    #[arg(value_name = "PASSWORD", requires = "batch")]
    batch_password: Option<String>,
}

/// Runs `tern passwd`.
pub fn run(args: &PasswdArgs) -> anyhow::Result<()> {
    if !valid_user_name(&args.user) {
        bail!(
            "user name {:?} cannot be stored: it must be non-empty and contain no ':' or line break",
            args.user
        );
    }
    let mut file = if args.create {
        PasswordFile::default()
    } else {
        load_existing(&args.file)?
    };
    if args.delete {
        if !file.remove(&args.user) {
            bail!(
                "user {:?} is not in {}: nothing to delete",
                args.user,
                args.file.display()
            );
        }
    } else {
        let password = read_password(args)?;
        let hash = PasswordHash::new_scram(&password).context("cannot hash the password")?;
        file.set(&args.user, hash);
    }
    file.save(&args.file)?;
    Ok(())
}

fn load_existing(path: &Path) -> anyhow::Result<PasswordFile> {
    if !path.exists() {
        bail!("{} does not exist: add -c to create it", path.display());
    }
    Ok(PasswordFile::load(path)?)
}

fn read_password(args: &PasswdArgs) -> anyhow::Result<String> {
    let password = if let Some(password) = args.password.as_ref().or(args.batch_password.as_ref()) {
        password.clone()
    } else if args.stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        let first = rpassword::prompt_password("Password: ")
            .context("cannot read the password from the terminal")?;
        let again = rpassword::prompt_password("Reenter password: ")
            .context("cannot read the password from the terminal")?;
        if first != again {
            bail!("the passwords do not match: run the command again");
        }
        first
    };
    if password.is_empty() {
        bail!(
            "the password is empty: give one (an empty password would let anyone in as this user)"
        );
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: PasswdArgs,
    }

    fn passwd(argv: &[&str]) -> anyhow::Result<()> {
        let wrapper =
            Wrapper::try_parse_from(std::iter::once("passwd").chain(argv.iter().copied()))
                .expect("valid arguments");
        run(&wrapper.args)
    }

    #[test]
    fn create_update_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let file = path.to_str().unwrap();
        let error = passwd(&[file, "alice", "--password", "a"]).unwrap_err();
        assert!(error.to_string().contains("add -c"), "{error}");
        passwd(&["-c", file, "alice", "--password", "a"]).unwrap();
        passwd(&[file, "bob", "--password", "b"]).unwrap();
        passwd(&[file, "alice", "--password", "a2"]).unwrap();
        let loaded = PasswordFile::load(&path).unwrap();
        assert!(loaded.get("alice").unwrap().verify(b"a2"));
        assert!(loaded.get("bob").unwrap().verify(b"b"));
        passwd(&["-b", file, "carol", "c"]).unwrap();
        assert!(
            PasswordFile::load(&path)
                .unwrap()
                .get("carol")
                .unwrap()
                .verify(b"c")
        );
        passwd(&["-D", file, "bob"]).unwrap();
        assert!(PasswordFile::load(&path).unwrap().get("bob").is_none());
        let error = passwd(&["-D", file, "bob"]).unwrap_err();
        assert!(error.to_string().contains("nothing to delete"), "{error}");
        let error = passwd(&[file, "a:b", "--password", "x"]).unwrap_err();
        assert!(error.to_string().contains("':'"), "{error}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
