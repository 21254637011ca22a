//! A safe first run: the published placeholder token is never accepted, and a connection left
//! without a token gets a random one, kept in the data directory and reused on every later start.
//!
//! The token is shown once per start, in the webhook URL printed to paste into Whaticket (as
//! Jupyter prints its login link); logs name only the file that holds it.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::{is_url_safe_token, ConnectionSettings, Secret, Settings};

/// The token earlier versions shipped in config/default.toml: public, so refused everywhere.
pub const PLACEHOLDER_TOKEN: &str = "change-me";

/// Folder of `storage.path` with one file per connection whose token was generated.
const TOKEN_DIR: &str = "webhook-tokens";

/// 256 random bits: 43 characters of URL-safe base64, fit for a URL path.
const TOKEN_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum FirstRunError {
    #[error("cannot keep the generated token of connection `{connection}` in {}", path.display())]
    Write {
        connection: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the generated token of connection `{connection}` from {}", path.display())]
    Read {
        connection: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} does not hold a valid token (8+ characters of [A-Za-z0-9-_.~]); delete it and a new \
         one is generated",
        path.display()
    )]
    Invalid { path: PathBuf },
    #[error("the system's random number generator failed: {0}")]
    Random(getrandom::Error),
}

pub fn is_placeholder(token: &Secret) -> bool {
    token.expose() == PLACEHOLDER_TOKEN
}

/// Where connection `name`'s generated token is kept.
pub fn token_path(settings: &Settings, name: &str) -> PathBuf {
    settings.storage.path.join(TOKEN_DIR).join(name)
}

/// No credential but the placeholder: such a connection would accept nothing.
fn needs_token(conn: &ConnectionSettings) -> bool {
    conn.tokens.iter().all(is_placeholder) && conn.hmac_secrets.is_empty()
}

/// A connection whose token comes from the data directory.
#[derive(Clone, Debug)]
pub struct GeneratedToken {
    pub connection: String,
    pub token: Secret,
    pub path: PathBuf,
    /// Made by this call (else kept from an earlier start).
    pub created: bool,
}

/// Drops the placeholder from every connection, and gives each connection left without a token
/// or HMAC secret the token kept for it in the data directory, generating it the first time.
pub fn complete(settings: &mut Settings) -> Result<Vec<GeneratedToken>, FirstRunError> {
    let mut generated = Vec::new();
    for i in 0..settings.connections.len() {
        let path = token_path(settings, &settings.connections[i].name);
        let conn = &mut settings.connections[i];
        let needs = needs_token(conn);
        if conn.tokens.iter().any(is_placeholder) {
            tracing::warn!(
                connection = %conn.name,
                "the placeholder token `{PLACEHOLDER_TOKEN}` is never accepted; remove it from the configuration"
            );
            conn.tokens.retain(|t| !is_placeholder(t));
        }
        if !needs {
            continue;
        }
        let (token, created) = match read(&conn.name, &path)? {
            Some(token) => (token, false),
            None => (create(&conn.name, &path)?, true),
        };
        tracing::info!(
            connection = %conn.name,
            file = %path.display(),
            created,
            "connection uses a generated token (its webhook URL is printed at start-up)"
        );
        conn.tokens.push(token.clone());
        generated.push(GeneratedToken {
            connection: conn.name.clone(),
            token,
            path,
            created,
        });
    }
    Ok(generated)
}

/// A connection with no credential in the configuration, as `check-config` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pending {
    /// `serve` uses the token an earlier start generated, kept in this file.
    Kept(PathBuf),
    /// `serve` will generate one and keep it in this file.
    Missing(PathBuf),
}

/// The connections that still need a token in the configuration, by name. Reads nothing but
/// whether the files exist; creates nothing.
pub fn pending(settings: &Settings) -> Vec<(String, Pending)> {
    settings
        .connections
        .iter()
        .filter(|c| needs_token(c))
        .map(|c| {
            let path = token_path(settings, &c.name);
            let state = if path.is_file() {
                Pending::Kept(path)
            } else {
                Pending::Missing(path)
            };
            (c.name.clone(), state)
        })
        .collect()
}

fn read(connection: &str, path: &Path) -> Result<Option<Secret>, FirstRunError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FirstRunError::Read {
                connection: connection.to_owned(),
                path: path.to_owned(),
                source,
            })
        }
    };
    let token = text.trim();
    if !is_url_safe_token(token) || token == PLACEHOLDER_TOKEN {
        return Err(FirstRunError::Invalid {
            path: path.to_owned(),
        });
    }
    // A copy or restore may have widened it; the token is a password.
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "token file was readable by others; set to 0600");
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
        }
    }
    Ok(Some(Secret::new(token)))
}

/// Writes a new token to a private temporary file and renames it into place, so the file is
/// whole or absent after a crash. Called while this process holds the store's lock (one relay
/// per data directory), so no other start writes it meanwhile.
fn create(connection: &str, path: &Path) -> Result<Secret, FirstRunError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(FirstRunError::Random)?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let write_error = |source| FirstRunError::Write {
        connection: connection.to_owned(),
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .ok_or_else(|| write_error(io::ErrorKind::InvalidInput.into()))?;
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(write_error)?;
    let temp = dir.join(format!(".{connection}.tmp"));
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(format!("{token}\n").as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temp, path))
        // The directory entry too, so the token the operator pasted survives a power cut.
        .and_then(|()| File::open(dir)?.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(write_error(e));
    }
    Ok(Secret::new(token))
}

/// What `serve` prints to stderr for each connection on a generated token: the webhook URL to
/// paste into Whaticket, the only place the token is ever shown.
pub fn announcement(generated: &[GeneratedToken], listening: SocketAddr) -> String {
    let ip = listening.ip();
    let shown_ip = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    let base = format!("http://{}", SocketAddr::new(shown_ip, listening.port()));
    let mut text = String::new();
    for g in generated {
        let origin = if g.created {
            "generated now"
        } else {
            "generated on its first start"
        };
        text.push_str(&format!(
            "\nConnection `{}` has no token in the configuration: it uses one {origin}, kept in {}.\n\
             Paste this webhook URL into Whaticket (Connections → your WhatsApp → Webhook):\n\n    \
             {base}/hooks/{}/{}\n\n",
            g.connection,
            g.path.display(),
            g.connection,
            g.token.expose(),
        ));
    }
    if !generated.is_empty() && ip.is_unspecified() {
        text.push_str(&format!(
            "The relay listens on every interface ({listening}): replace {shown_ip} with the \
             address at which Whaticket reaches this machine.\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &tempfile::TempDir, toml_connections: &str) -> Settings {
        let path = dir.path().join("relay.toml");
        let data = dir.path().join("data");
        fs::write(
            &path,
            format!(
                "[storage]\npath = \"{}\"\n{toml_connections}",
                data.display()
            ),
        )
        .unwrap();
        let env = figment::providers::Env::prefixed("RELAY_TEST_UNUSED_PREFIX__");
        Settings::load_from(Some(&path), env).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_connection_without_a_token_gets_one_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let conns = "[[connections]]\nname = \"loja\"\n\n[[connections]]\nname = \"velha\"\ntokens = [\"change-me\"]\n";
        let mut first = settings(&dir, conns);
        assert_eq!(pending(&first).len(), 2);
        let made = complete(&mut first).unwrap();
        assert_eq!(made.len(), 2);
        for g in &made {
            assert!(g.created);
            let token = g.token.expose();
            assert_eq!(token.len(), 43, "{} bytes of base64", TOKEN_BYTES);
            assert!(is_url_safe_token(token));
            assert_eq!(fs::read_to_string(&g.path).unwrap(), format!("{token}\n"));
            assert_eq!(mode(&g.path), 0o600);
            assert_eq!(mode(g.path.parent().unwrap()), 0o700);
        }
        assert_ne!(made[0].token, made[1].token);
        // The placeholder is gone; the generated token is the connection's only one.
        assert_eq!(first.connections[1].tokens, vec![made[1].token.clone()]);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(made[0].path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        let mut again = settings(&dir, conns);
        assert!(pending(&again)
            .iter()
            .all(|(_, p)| matches!(p, Pending::Kept(_))));
        let kept = complete(&mut again).unwrap();
        assert_eq!(kept.len(), 2);
        for (k, g) in kept.iter().zip(&made) {
            assert!(!k.created);
            assert_eq!(k.token, g.token);
        }
    }

    #[test]
    fn configured_credentials_are_left_alone_but_the_placeholder_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(
            &dir,
            "[[connections]]\nname = \"a\"\ntokens = [\"change-me\", \"real-token-1\"]\n\n\
             [[connections]]\nname = \"b\"\ntokens = [\"change-me\"]\nhmac_secrets = [\"signing-secret\"]\n",
        );
        assert!(pending(&s).is_empty());
        assert!(complete(&mut s).unwrap().is_empty());
        assert_eq!(s.connections[0].tokens, vec![Secret::new("real-token-1")]);
        assert!(s.connections[1].tokens.is_empty());
        assert!(!dir.path().join("data").join(TOKEN_DIR).exists());
    }

    #[test]
    fn a_bad_or_widened_token_file_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let conns = "[[connections]]\nname = \"loja\"\n";
        let mut s = settings(&dir, conns);
        let path = complete(&mut s).unwrap()[0].path.clone();

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        complete(&mut settings(&dir, conns)).unwrap();
        assert_eq!(mode(&path), 0o600);

        for bad in ["", "short", "change-me", "has space in it"] {
            fs::write(&path, bad).unwrap();
            let err = complete(&mut settings(&dir, conns)).unwrap_err();
            assert!(
                matches!(err, FirstRunError::Invalid { .. }),
                "{bad:?}: {err}"
            );
            assert!(!err.to_string().contains("has space"), "{err}");
        }
    }

    #[test]
    fn the_announcement_shows_the_url_once_and_hints_at_the_address() {
        let g = GeneratedToken {
            connection: "loja".to_owned(),
            token: Secret::new("tok_abcdefgh"),
            path: PathBuf::from("data/webhook-tokens/loja"),
            created: true,
        };
        let all = announcement(std::slice::from_ref(&g), "0.0.0.0:8080".parse().unwrap());
        assert_eq!(all.matches("tok_abcdefgh").count(), 1, "{all}");
        assert!(
            all.contains("    http://127.0.0.1:8080/hooks/loja/tok_abcdefgh\n"),
            "{all}"
        );
        assert!(all.contains("replace 127.0.0.1"), "{all}");
        assert!(all.contains("data/webhook-tokens/loja"), "{all}");

        let local = announcement(std::slice::from_ref(&g), "192.0.2.7:9000".parse().unwrap());
        assert!(
            local.contains("http://192.0.2.7:9000/hooks/loja/tok_abcdefgh"),
            "{local}"
        );
        assert!(!local.contains("replace"), "{local}");

        let v6 = announcement(&[g], "[::]:8080".parse().unwrap());
        assert!(v6.contains("http://[::1]:8080/hooks/loja/"), "{v6}");
        assert_eq!(announcement(&[], "0.0.0.0:8080".parse().unwrap()), "");
    }
}
