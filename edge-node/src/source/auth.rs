//! A camera's credentials: where they come from (`[[cameras]]
//! username_file` / `password_file` / `username_env` / `password_env`) and
//! reading them. They are handed to the RTSP or HTTP source element as its
//! `user-id` / `user-pw` properties at each connection, so they are never
//! part of a URL that could be printed, logged or published.

use std::path::PathBuf;

/// Where a camera's user name and password come from. Files win over
/// environment variables. Empty: the camera needs none (or its URL has them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CameraAuth {
    pub username_file: Option<PathBuf>,
    pub password_file: Option<PathBuf>,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
}

/// A user name and password, read. `Debug` never shows the password.
#[derive(Clone, PartialEq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &"***")
            .field("password", &"***")
            .finish()
    }
}

/// The first line of a secret file, without its line end. The error names
/// the file, never its content.
fn read_secret(what: &str, p: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| format!("cannot read the camera's {what} file {}: {e}", p.display()))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

fn from_env(what: &str, var: &str) -> Result<String, String> {
    std::env::var(var).map_err(|_| {
        format!("the camera's {what} environment variable {var} is not set (or not UTF-8)")
    })
}

impl CameraAuth {
    /// True when any source of credentials is configured.
    pub fn is_set(&self) -> bool {
        self.username_file.is_some()
            || self.password_file.is_some()
            || self.username_env.is_some()
            || self.password_env.is_some()
    }

    /// Reads the credentials now (at every connection, so a rotated secret
    /// file is picked up on the next reconnect). `Ok(None)` when none are
    /// configured; an error names the file or variable that failed.
    pub fn resolve(&self) -> Result<Option<Credentials>, String> {
        if !self.is_set() {
            return Ok(None);
        }
        let user = match (&self.username_file, &self.username_env) {
            (Some(f), _) => read_secret("user name", f)?.trim().to_string(),
            (None, Some(v)) => from_env("user name", v)?.trim().to_string(),
            (None, None) => String::new(),
        };
        let password = match (&self.password_file, &self.password_env) {
            (Some(f), _) => read_secret("password", f)?,
            (None, Some(v)) => from_env("password", v)?,
            (None, None) => String::new(),
        };
        Ok(Some(Credentials { user, password }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_before_variables_and_never_shows_the_password() {
        let dir = std::env::temp_dir().join(format!("edge-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let u = dir.join("u");
        let p = dir.join("p");
        std::fs::write(&u, " cam-user \n").unwrap();
        std::fs::write(&p, "pa ss\nignored").unwrap();
        let auth = CameraAuth {
            username_file: Some(u),
            password_file: Some(p),
            username_env: Some("EDGE_AUTH_TEST_UNSET_U".into()),
            password_env: Some("EDGE_AUTH_TEST_UNSET_P".into()),
        };
        let c = auth.resolve().unwrap().unwrap();
        assert_eq!(c.user, "cam-user");
        assert_eq!(c.password, "pa ss");
        assert!(!format!("{c:?}").contains("pa ss"));
        let missing = CameraAuth {
            password_env: Some("EDGE_AUTH_TEST_UNSET_P".into()),
            ..CameraAuth::default()
        };
        let e = missing.resolve().unwrap_err();
        assert!(e.contains("EDGE_AUTH_TEST_UNSET_P"), "{e}");
        assert_eq!(CameraAuth::default().resolve().unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
