//! Pre-auth keys through headscale's API (`POST /api/v1/preauthkey`) and
//! the user lookup they need (`GET /api/v1/user`), for every generation.
//!
//! The request body is `{user, reusable, ephemeral, expiration, aclTags}`
//! (protojson, camelCase) in every generation; what `user` holds changed:
//!
//! | headscale | `user` | how tart-sync knows |
//! |---|---|---|
//! | 0.22 – 0.25 | the user's NAME | no `/version` (404), `/api/v1/routes` answers |
//! | 0.26 | the user's ID (uint64, a JSON string) | no `/version`, `/api/v1/routes` 404 (removed in 0.26) |
//! | 0.27 | the user's ID | `/version` answers |
//! | 0.28+ | the user's ID, or none for a tagged key | `/version` ≥ 0.28 |
//!
//! The created key is a secret: [`AuthKey`] hides it from `Debug`, and no
//! answer body is logged.

use std::fmt;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::client::HeadscaleClient;
use super::error::HeadscaleError;

/// How `CreatePreAuthKeyRequest.user` names the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserParam {
    /// headscale 0.22 – 0.25: the user's name.
    Name,
    /// headscale 0.26 and 0.27: the user's id, required.
    Id,
    /// headscale 0.28+: the user's id, or no user for a tagged key.
    IdOrTagged,
}

impl UserParam {
    /// In words, for messages and `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            UserParam::Name => "user name (headscale 0.22-0.25)",
            UserParam::Id => "user id (headscale 0.26-0.27)",
            UserParam::IdOrTagged => "user id, optional for tagged keys (headscale 0.28+)",
        }
    }
}

/// A headscale user, as `GET /api/v1/user` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The id (a uint64, a string in protojson).
    pub id: String,
    /// The name.
    pub name: String,
}

/// A pre-auth key's secret. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey(String);

impl AuthKey {
    /// The key itself, for the one place that prints it (stdout).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthKey(***)")
    }
}

/// What to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequest {
    /// The owning user's name; `None` only for a tagged key on 0.28+.
    pub user: Option<String>,
    /// The key may register several machines.
    pub reusable: bool,
    /// Machines registered with it are removed when they go offline.
    pub ephemeral: bool,
    /// When the key expires.
    pub expiration: OffsetDateTime,
    /// ACL tags (`tag:…`) given to the machines registered with it.
    pub tags: Vec<String>,
}

/// A created key.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    /// The secret.
    pub key: AuthKey,
    /// headscale's id of the key.
    pub id: String,
    /// When it expires, as headscale recorded it.
    pub expiration: Option<OffsetDateTime>,
    /// The tags headscale recorded.
    pub acl_tags: Vec<String>,
    /// How the user was named in the request (the generation's rule).
    pub user_param: UserParam,
}

#[derive(Deserialize)]
struct UsersBody {
    #[serde(default)]
    users: Vec<UserBody>,
}

#[derive(Deserialize)]
struct UserBody {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedBody {
    pre_auth_key: KeyBody,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyBody {
    key: String,
    #[serde(default)]
    id: Value,
    #[serde(default)]
    expiration: Option<String>,
    #[serde(default)]
    acl_tags: Vec<String>,
}

/// A protojson uint64 (a string) or a plain number, as text.
fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// `(major, minor)` of a version like `v0.28.0` or `0.27.1-beta.2`.
fn minor_version(version: &str) -> Option<(u64, u64)> {
    let v = version.trim().trim_start_matches('v');
    let mut parts = v.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl HeadscaleClient {
    /// Every user (`GET /api/v1/user`, the same in every generation).
    pub async fn list_users(&self) -> Result<Vec<User>, HeadscaleError> {
        let body = self
            .call(Method::GET, "api/v1/user", None)
            .await?
            .ok_or_else(|| HeadscaleError::NotHeadscale {
                url: self.base_url().to_string(),
            })?;
        let parsed: UsersBody = serde_json::from_slice(&body)
            .map_err(|e| HeadscaleError::decode(format!("the user list: {e}"), &body))?;
        Ok(parsed
            .users
            .into_iter()
            .map(|u| User {
                id: id_text(&u.id),
                name: u.name,
            })
            .collect())
    }

    /// How this server's `CreatePreAuthKeyRequest` names the user (see the
    /// module docs): `/version` (0.27+), else whether `/api/v1/routes`
    /// (removed in 0.26) exists.
    pub async fn user_param(&self) -> Result<UserParam, HeadscaleError> {
        if let Some(version) = self.version().await? {
            return Ok(match minor_version(&version) {
                Some((0, minor)) if minor < 28 => UserParam::Id,
                _ => UserParam::IdOrTagged,
            });
        }
        match self.call(Method::GET, "api/v1/routes", None).await? {
            Some(_) => Ok(UserParam::Name),
            None => Ok(UserParam::Id),
        }
    }

    /// Creates a pre-auth key (`POST /api/v1/preauthkey`), naming the user
    /// as this server's generation expects.
    pub async fn create_preauth_key(
        &self,
        request: &KeyRequest,
    ) -> Result<CreatedKey, HeadscaleError> {
        let user_param = self.user_param().await?;
        let user = match (&request.user, user_param) {
            (Some(name), UserParam::Name) => Some(name.clone()),
            (Some(name), UserParam::Id | UserParam::IdOrTagged) => {
                let users = self.list_users().await?;
                Some(user_id(&users, name)?)
            }
            (None, UserParam::IdOrTagged) if !request.tags.is_empty() => None,
            (None, _) => {
                return Err(HeadscaleError::Config {
                    detail: format!(
                        "a pre-auth key needs a user on this headscale ({}); set \
                         headscale.user or pass --user (a key without user needs headscale \
                         0.28+ and --tags)",
                        user_param.as_str()
                    ),
                })
            }
        };
        let body = request_body(user.as_deref(), request)?;
        let answer = self
            .call(Method::POST, "api/v1/preauthkey", Some(&body))
            .await?
            .ok_or_else(|| HeadscaleError::NotHeadscale {
                url: self.base_url().to_string(),
            })?;
        // Not `HeadscaleError::decode`: it quotes the body, which holds the key.
        let created: CreatedBody =
            serde_json::from_slice(&answer).map_err(|e| HeadscaleError::Decode {
                detail: format!(
                    "headscale's answer to POST /api/v1/preauthkey has no preAuthKey.key \
                     (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            })?;
        let k = created.pre_auth_key;
        Ok(CreatedKey {
            key: AuthKey(k.key),
            id: id_text(&k.id),
            expiration: k
                .expiration
                .as_deref()
                .and_then(|t| super::parse_timestamp(t).ok().flatten()),
            acl_tags: k.acl_tags,
            user_param,
        })
    }
}

/// The id of the one user named `name`.
fn user_id(users: &[User], name: &str) -> Result<String, HeadscaleError> {
    let named: Vec<&User> = users.iter().filter(|u| u.name == name).collect();
    match named.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(HeadscaleError::Api {
            status: 404,
            message: format!(
                "no headscale user named {name:?} (create it with `headscale users create \
                 {name}`, or set headscale.user / --user)"
            ),
        }),
        several => {
            // Users from different OIDC providers may share a name (0.24+).
            let ids: Vec<&str> = several.iter().map(|u| u.id.as_str()).collect();
            Err(HeadscaleError::Api {
                status: 409,
                message: format!(
                    "several headscale users are named {name:?} (ids {}); rename one \
                     (`headscale users rename`) so that the name is unique",
                    ids.join(", ")
                ),
            })
        }
    }
}

/// The JSON body of `POST /api/v1/preauthkey`.
fn request_body(user: Option<&str>, request: &KeyRequest) -> Result<Value, HeadscaleError> {
    let expiration = request
        .expiration
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| HeadscaleError::Config {
            detail: format!("cannot write the expiration time: {e}"),
        })?;
    let mut body = Map::new();
    if let Some(user) = user {
        body.insert("user".into(), json!(user));
    }
    body.insert("reusable".into(), json!(request.reusable));
    body.insert("ephemeral".into(), json!(request.ephemeral));
    body.insert("expiration".into(), json!(expiration));
    body.insert("aclTags".into(), json!(request.tags));
    Ok(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(minor_version("v0.28.0"), Some((0, 28)));
        assert_eq!(minor_version("0.27.1-beta.2"), Some((0, 27)));
        assert_eq!(minor_version("dev"), None);
    }

    #[test]
    fn users_by_name() {
        let u = |id: &str, name: &str| User {
            id: id.into(),
            name: name.into(),
        };
        let users = [u("1", "tarts"), u("2", "ann"), u("3", "ann")];
        assert_eq!(user_id(&users, "tarts").unwrap(), "1");
        assert!(user_id(&users, "bob")
            .unwrap_err()
            .to_string()
            .contains("no headscale user"));
        assert!(user_id(&users, "ann")
            .unwrap_err()
            .to_string()
            .contains("ids 2, 3"));
    }

    #[test]
    fn the_key_is_not_in_debug() {
        let key = AuthKey("hskey-auth-abc-SECRET".into());
        assert!(!format!("{key:?}").contains("SECRET"));
    }
}
