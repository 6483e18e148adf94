//! The local users file (`auth.users_file`, SPEC §8.5): `[[user]]` tables
//! with `name`, `password_hash` (an argon2id PHC string), an optional
//! `email` and `groups`. Read and validated with the rest of the config —
//! at start, by `check` and on every reload — and refused whole on any
//! problem, each naming the users file, line and key. Hashes are parsed
//! here, once; nothing prints them ([`User`]'s `Debug` hides the hash).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use argon2::password_hash::phc::PasswordHash;
use serde::Deserialize;
use toml::Spanned;

use super::error::{Collector, ConfigError};
use super::raw::S;

/// Bounds on the cost a hash in the users file may ask of each login
/// attempt: the verifier runs every hash with its own parameters, so a
/// stray `m=4194304` would cost 4 GiB per attempt.
pub const MAX_M_COST_KIB: u32 = 256 * 1024;
pub const MAX_T_COST: u32 = 16;
pub const MAX_P_COST: u32 = 8;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsers {
    #[serde(default)]
    user: Vec<Spanned<RawUser>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: S<String>,
    password_hash: S<String>,
    email: S<String>,
    groups: S<Vec<Spanned<String>>>,
}

/// One local user. `Debug` never shows the hash.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub password_hash: PasswordHash,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("email", &self.email)
            .field("groups", &self.groups)
            .field("password_hash", &"(argon2id)")
            .finish()
    }
}

/// The users of `provider = "local"`, by name.
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_name: HashMap<String, User>,
    /// The hash an unknown name is verified against, so that it costs what
    /// a wrong password costs: the first user's (same parameters).
    dummy: Option<PasswordHash>,
}

impl Users {
    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// A hash of the file's own parameters for unknown names; `None` when
    /// the file has no user (the verifier then uses its default-cost one).
    pub fn dummy(&self) -> Option<&PasswordHash> {
        self.dummy.as_ref()
    }
}

/// An identity value (SPEC §8.4): 1 to 256 bytes, no control characters.
fn identity_value(v: &str) -> bool {
    !v.is_empty() && v.len() <= 256 && !v.chars().any(char::is_control)
}

/// Reads and validates the users file at `path`.
pub(super) fn load(path: &Path) -> Result<Users, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.display().to_string(),
            line: 0,
            key: "(file)".into(),
            message: format!("cannot read the users file: {e}"),
        }]
    })?;
    parse(path, &text)
}

/// Validates users-file text as if read from `path`.
pub(super) fn parse(path: &Path, text: &str) -> Result<Users, Vec<ConfigError>> {
    let mut errs = Collector::new(path, text);
    let raw: RawUsers = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            errs.push_toml(&e);
            return Err(errs.errors);
        }
    };
    let mut users = Users::default();
    for (i, u) in raw.user.into_iter().enumerate() {
        let start = u.span().start;
        let key = format!("user[{}]", i + 1);
        if let Some(user) = one(&mut errs, &key, start, u.into_inner()) {
            if users.by_name.contains_key(&user.name) {
                let msg = format!(
                    "{:?} is already a user above; names must be unique",
                    user.name
                );
                errs.push(Some(start), format!("{key}.name"), msg);
                continue;
            }
            if users.dummy.is_none() {
                users.dummy = Some(user.password_hash.clone());
            }
            users.by_name.insert(user.name.clone(), user);
        }
    }
    match errs.errors.is_empty() {
        true => Ok(users),
        false => Err(errs.errors),
    }
}

fn one(errs: &mut Collector<'_>, key: &str, start: usize, u: RawUser) -> Option<User> {
    let mut ok = true;
    let name = match u.name {
        Some(n) if identity_value(n.get_ref()) && !n.get_ref().contains(char::is_whitespace) => {
            Some(n.into_inner())
        }
        Some(n) => {
            let msg = format!("{:?} is not a user name; write 1 to 256 bytes with no spaces or control characters", n.get_ref());
            errs.push(Some(n.span().start), format!("{key}.name"), msg);
            None
        }
        None => {
            errs.push(Some(start), format!("{key}.name"), "is required");
            None
        }
    };
    let hash = match u.password_hash {
        Some(h) => match phc(h.get_ref()) {
            Ok(hash) => Some(hash),
            Err(why) => {
                // The value is a secret's hash: the message never quotes it.
                let msg = format!("{why}; make one with `cloakroom hash-password`");
                errs.push(Some(h.span().start), format!("{key}.password_hash"), msg);
                None
            }
        },
        None => {
            let msg = "is required: an argon2id PHC string from `cloakroom hash-password`";
            errs.push(Some(start), format!("{key}.password_hash"), msg);
            None
        }
    };
    let email = match u.email {
        Some(e) if identity_value(e.get_ref()) => Some(e.into_inner()),
        Some(e) => {
            let msg = format!(
                "{:?} is not valid; 1 to 256 bytes, no control characters",
                e.get_ref()
            );
            errs.push(Some(e.span().start), format!("{key}.email"), msg);
            ok = false;
            None
        }
        None => None,
    };
    let mut groups = Vec::new();
    for g in u.groups.map(Spanned::into_inner).unwrap_or_default() {
        if identity_value(g.get_ref()) && !g.get_ref().contains(',') {
            groups.push(g.into_inner());
        } else {
            let msg = format!(
                "{:?} is not a group; 1 to 256 bytes, no comma or control characters",
                g.get_ref()
            );
            errs.push(Some(g.span().start), format!("{key}.groups"), msg);
            ok = false;
        }
    }
    match (name, hash, ok) {
        (Some(name), Some(password_hash), true) => Some(User {
            name,
            email,
            groups,
            password_hash,
        }),
        _ => None,
    }
}

/// Parses a PHC string and checks that the verifier can and should run it:
/// argon2id, version 19, parameters within the bounds above.
pub fn phc(s: &str) -> Result<PasswordHash, String> {
    let hash = PasswordHash::new(s.trim()).map_err(|e| format!("is not a PHC string ({e})"))?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "uses {}; only argon2id hashes are accepted",
            hash.algorithm.as_str()
        ));
    }
    if hash.version.is_some_and(|v| v != 0x13) {
        return Err("is not argon2 version 19".into());
    }
    let params = argon2::Params::try_from(&hash)
        .map_err(|e| format!("has invalid argon2 parameters ({e})"))?;
    if params.m_cost() > MAX_M_COST_KIB
        || params.t_cost() > MAX_T_COST
        || params.p_cost() > MAX_P_COST
    {
        return Err(format!(
            "asks too much per login (at most m={MAX_M_COST_KIB}, t={MAX_T_COST}, p={MAX_P_COST})"
        ));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("has no salt or no hash".into());
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    // "secret", from `cloakroom hash-password`.
    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$Na/g0Lu5fuUuDjmyHciFTw$A33yJsLn6kpEVf6y9v5sibUeM7neHmFD97pM+p2eOcU";

    fn errors(text: &str) -> Vec<String> {
        match parse(Path::new("/x/users.toml"), text) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_valid_file_loads_and_debug_hides_the_hash() {
        let text = format!(
            "[[user]]\nname = \"alice\"\npassword_hash = \"{HASH}\"\nemail = \"a@example.com\"\ngroups = [\"admin\", \"dev\"]\n"
        );
        let users = parse(Path::new("/x/users.toml"), &text).unwrap();
        let alice = users.get("alice").unwrap();
        assert_eq!(alice.groups, ["admin", "dev"]);
        assert!(users.dummy().is_some());
        assert!(!format!("{users:?}").contains("Na/g0Lu5fuUuDjmyHciFTw"));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text = format!(
            "[[user]]\nname = \"alice\"\npassword_hash = \"{HASH}\"\n\n[[user]]\nname = \"alice\"\npassword_hash = \"{HASH}\"\n"
        );
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("/x/users.toml:5: user[2].name:"), "{e:?}");
        let e = errors("[[user]]\nname = \"bob\"\npassword_hash = \"$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$5SQVNlGFaLmmZ7dxyHxXHYcCj+fdhN1bhJjJ5sp9lSQ\"\n");
        assert!(
            e[0].starts_with("/x/users.toml:3: user[1].password_hash: uses argon2i"),
            "{e:?}"
        );
        let e = errors("[[user]]\nname = \"bob\"\npassword_hash = \"hunter2\"\n");
        assert!(
            e[0].contains("user[1].password_hash: is not a PHC string"),
            "{e:?}"
        );
        assert!(!e[0].contains("hunter2"), "{e:?}");
        let e = errors("[[user]]\nname = \"bob\"\npasword_hash = \"x\"\n");
        assert!(
            e[0].contains(":3: user.pasword_hash: unknown field"),
            "{e:?}"
        );
        let e = errors(&format!(
            "[[user]]\nname = \"b\"\npassword_hash = \"{HASH}\"\ngroups = [\"a,b\"]\n"
        ));
        assert!(e[0].contains(":4: user[1].groups:"), "{e:?}");
        let huge = HASH.replace("m=19456", "m=4194304");
        let e = errors(&format!(
            "[[user]]\nname = \"b\"\npassword_hash = \"{huge}\"\n"
        ));
        assert!(e[0].contains("asks too much"), "{e:?}");
    }
}
