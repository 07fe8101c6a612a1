//! `tart-sync enrol <name>`: checks a new TART's name, creates a pre-auth
//! key for it through headscale's API and says what to paste on the TART.
//!
//! The name must be a DNS label, unused by any node (`givenName`), and not
//! reserved: `routes.reserved` always, and the site's own paths when a
//! Caddy is reachable (its config holds them). Refusals are
//! [`EnrolError::is_usage`] (exit 2). The key is a secret: it is only in
//! [`Enrolment::text`] and [`Enrolment::json`], which the command prints to
//! stdout, never in logs or errors.

use std::time::Duration;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use url::Url;

use crate::config::Settings;
use crate::headscale::{
    is_valid_dns_label, CreatedKey, HeadscaleClient, HeadscaleError, KeyRequest,
};
use crate::layout;
use crate::reconcile::Instance;
use crate::reserved::Reserved;

/// Default of `--expiration`.
pub const DEFAULT_EXPIRATION: Duration = Duration::from_secs(24 * 3600);

/// What `tart-sync enrol` was asked for.
#[derive(Debug, Clone)]
pub struct EnrolOptions {
    /// The TART's name: its host name, `givenName` and URL name.
    pub name: String,
    /// The key may register more than one machine.
    pub reusable: bool,
    /// Machines registered with it are removed when offline.
    pub ephemeral: bool,
    /// How long the key is valid.
    pub expiration: Duration,
    /// `--tags`; when empty, `headscale.tags` (the filter) is used.
    pub tags: Vec<String>,
    /// `--user`; when `None`, `headscale.user`.
    pub user: Option<String>,
    /// `--login-server`: the headscale URL the TART reaches; default `headscale.url`.
    pub login_server: Option<Url>,
}

/// Why an enrolment did not happen.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// The name cannot be a TART's name.
    #[error("{name:?} cannot be a TART's name: {why}")]
    BadName {
        /// The name given.
        name: String,
        /// Why, with what to do.
        why: String,
    },
    /// A node already has this name.
    #[error(
        "the name {name:?} is taken: headscale node {node_id} ({host}) already uses it; \
         pick another name, or rename or delete that node (`headscale nodes rename|delete`)"
    )]
    Taken {
        /// The name given.
        name: String,
        /// The node that has it.
        node_id: u64,
        /// That node's host name.
        host: String,
    },
    /// The options contradict the settings (the TART would not be routed).
    #[error("{0}")]
    Options(String),
    /// headscale failed or refused.
    #[error("headscale: {0}")]
    Headscale(#[from] HeadscaleError),
}

impl EnrolError {
    /// True for refusals of the request itself (exit status 2).
    pub fn is_usage(&self) -> bool {
        !matches!(self, EnrolError::Headscale(_))
    }
}

/// How the reserved names were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReservedCheck {
    /// `routes.reserved` and the site's own paths from a reachable Caddy.
    WithSite(String),
    /// Only `routes.reserved`: no Caddy answered (why).
    SettingOnly(String),
}

/// A created enrolment: everything the TART owner needs.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The TART's name.
    pub name: String,
    /// The URL it will get.
    pub url: String,
    /// The headscale URL the TART logs in to.
    pub login_server: Url,
    /// The owning user, when the key has one.
    pub user: Option<String>,
    /// The created key (its secret inside).
    pub key: CreatedKey,
    /// Reusable key.
    pub reusable: bool,
    /// Ephemeral key.
    pub ephemeral: bool,
    /// When the key expires.
    pub expiration: OffsetDateTime,
    /// How reserved names were checked.
    pub reserved: ReservedCheck,
}

/// Checks the name alone (no I/O).
pub fn check_label(name: &str) -> Result<(), EnrolError> {
    if is_valid_dns_label(name) {
        return Ok(());
    }
    Err(EnrolError::BadName {
        name: name.to_owned(),
        why: "it must be a DNS label: 1 to 63 characters of a-z, 0-9 and '-', not starting \
              or ending with '-' (headscale would rename the node, and its URL would differ)"
            .to_owned(),
    })
}

/// The tags the key gets: `--tags`, else the `headscale.tags` filter; an
/// error when the filter would leave the TART out.
pub fn key_tags(options: &EnrolOptions, filter: &[String]) -> Result<Vec<String>, EnrolError> {
    for tag in &options.tags {
        if !tag.starts_with("tag:") || tag.len() < 5 {
            return Err(EnrolError::Options(format!(
                "--tags: {tag:?} is not an ACL tag (tags look like tag:telescope)"
            )));
        }
    }
    if options.tags.is_empty() {
        return Ok(filter.to_vec());
    }
    if !filter.is_empty() && !options.tags.iter().any(|t| filter.contains(t)) {
        return Err(EnrolError::Options(format!(
            "--tags {} shares no tag with headscale.tags ({}): the TART would not be routed; \
             add one of those tags",
            options.tags.join(","),
            filter.join(",")
        )));
    }
    Ok(options.tags.clone())
}

/// Reserved names: `routes.reserved`, and the site's own paths from the
/// first Caddy that answers.
async fn reserved(settings: &Settings) -> (Reserved, ReservedCheck) {
    let mut why_not = String::from("no caddy.admin address");
    for address in &settings.caddy.admin {
        let inst = match Instance::new(address, &settings.caddy) {
            Ok(i) => i,
            Err(e) => {
                why_not = format!("{address}: {e}");
                continue;
            }
        };
        match inst.site_rules(&settings.routes).await {
            Ok(rules) => {
                return (
                    Reserved::new(&settings.routes, &rules),
                    ReservedCheck::WithSite(address.clone()),
                )
            }
            Err(e) => why_not = format!("{address}: {e}"),
        }
    }
    (
        Reserved::new(&settings.routes, &[]),
        ReservedCheck::SettingOnly(why_not),
    )
}

/// Checks the name against the settings, the site and headscale's nodes,
/// then creates the key.
pub async fn enrol(
    settings: &Settings,
    hs: &HeadscaleClient,
    options: &EnrolOptions,
) -> Result<Enrolment, EnrolError> {
    let name = options.name.as_str();
    check_label(name)?;
    let (reserved, check) = reserved(settings).await;
    if let Some(why) = reserved.why(name) {
        return Err(EnrolError::BadName {
            name: name.to_owned(),
            why,
        });
    }
    let user = options.user.clone().or(settings.headscale.user.clone());
    if let (Some(wanted), Some(filter)) = (&user, &settings.headscale.user) {
        if wanted != filter {
            return Err(EnrolError::Options(format!(
                "--user {wanted:?} differs from headscale.user ({filter:?}): the TART would \
                 not be routed"
            )));
        }
    }
    if options.expiration.is_zero() {
        return Err(EnrolError::Options(
            "--expiration must be longer than 0s (like 1h or 24h)".to_owned(),
        ));
    }
    let tags = key_tags(options, &settings.headscale.tags)?;
    let nodes = hs.list_nodes_shared(None).await?;
    if let Some(node) = nodes.list.nodes.iter().find(|n| n.given_name == name) {
        return Err(EnrolError::Taken {
            name: name.to_owned(),
            node_id: node.id,
            host: node.name.clone(),
        });
    }
    let expiration = OffsetDateTime::now_utc()
        .checked_add(
            time::Duration::try_from(options.expiration)
                .map_err(|_| EnrolError::Options("--expiration is too long".to_owned()))?,
        )
        .ok_or_else(|| EnrolError::Options("--expiration is too long".to_owned()))?;
    let request = KeyRequest {
        user: user.clone(),
        reusable: options.reusable,
        ephemeral: options.ephemeral,
        expiration,
        tags,
    };
    let key = hs.create_preauth_key(&request).await?;
    tracing::info!(name, key_id = %key.id, "pre-auth key created");
    Ok(Enrolment {
        name: name.to_owned(),
        url: layout::node_url(&settings.routes, name),
        login_server: options
            .login_server
            .clone()
            .unwrap_or_else(|| settings.headscale.url.clone()),
        user,
        key,
        reusable: options.reusable,
        ephemeral: options.ephemeral,
        expiration,
        reserved: check,
    })
}

impl Enrolment {
    fn expires(&self) -> String {
        self.key
            .expiration
            .unwrap_or(self.expiration)
            .replace_nanosecond(0)
            .unwrap_or(self.expiration)
            .format(&Rfc3339)
            .unwrap_or_else(|_| "?".to_owned())
    }

    /// The login server without a final `/` (as tailscale writes it).
    fn server(&self) -> String {
        self.login_server.as_str().trim_end_matches('/').to_owned()
    }

    /// What a TART owner pastes, in words (holds the key: stdout only).
    pub fn text(&self) -> String {
        let key = self.key.key.expose();
        let server = self.server();
        let name = &self.name;
        let kind = match (self.reusable, self.ephemeral) {
            (false, false) => "single-use",
            (true, false) => "reusable",
            (false, true) => "single-use, ephemeral",
            (true, true) => "reusable, ephemeral",
        };
        let tags = if self.key.acl_tags.is_empty() {
            String::new()
        } else {
            format!(", tags {}", self.key.acl_tags.join(","))
        };
        let reserved = match &self.reserved {
            ReservedCheck::WithSite(address) => {
                format!("checked against routes.reserved and the site's paths (Caddy {address})")
            }
            ReservedCheck::SettingOnly(why) => format!(
                "checked against routes.reserved only; the site's own paths were not \
                 checked ({why})"
            ),
        };
        format!(
            "TART {name:?}: pre-auth key created ({kind}, expires {expires}{tags}).\n\
             Name {reserved}.\n\
             \n\
             Key (keep it secret; it lets a machine join the tailnet):\n\
             \n    {key}\n\
             \n\
             On the TART, either add to the tailscale client service in its docker-compose.yml:\n\
             \n    environment:\
             \n      TAILSCALE_KEY: \"{key}\"\
             \n      TAILSCALE_SERVER_URL: \"{server}\"\
             \n      TAILSCALE_HOSTNAME: \"{name}\"\n\
             \n\
             or run:\n\
             \n    tailscale up --login-server {server} --authkey {key} --hostname {name}\n\
             \n\
             Once it is online, the TART is at {url}\n",
            expires = self.expires(),
            url = self.url,
        )
    }

    /// The same facts for scripts (holds the key: stdout only).
    pub fn json(&self) -> Value {
        let key = self.key.key.expose();
        let server = self.server();
        let name = &self.name;
        json!({
            "name": name,
            "url": self.url,
            "key": key,
            "key_id": self.key.id,
            "user": self.user,
            "reusable": self.reusable,
            "ephemeral": self.ephemeral,
            "expiration": self.expires(),
            "acl_tags": self.key.acl_tags,
            "login_server": server,
            "user_param": self.key.user_param.as_str(),
            "reserved_checked_with_site": matches!(self.reserved, ReservedCheck::WithSite(_)),
            "docker_compose_environment": {
                "TAILSCALE_KEY": key,
                "TAILSCALE_SERVER_URL": server,
                "TAILSCALE_HOSTNAME": name,
            },
            "tailscale_up": format!(
                "tailscale up --login-server {server} --authkey {key} --hostname {name}"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(tags: &[&str]) -> EnrolOptions {
        EnrolOptions {
            name: "t1".into(),
            reusable: false,
            ephemeral: false,
            expiration: DEFAULT_EXPIRATION,
            tags: tags.iter().map(|s| s.to_string()).collect(),
            user: None,
            login_server: None,
        }
    }

    #[test]
    fn labels() {
        assert!(check_label("tart-1").is_ok());
        for bad in ["", "-a", "a-", "Tart", "a.b", "a_b", &"a".repeat(64)] {
            assert!(check_label(bad).unwrap_err().is_usage(), "{bad}");
        }
    }

    #[test]
    fn tags_follow_the_filter() {
        let filter = vec!["tag:tart".to_string()];
        assert_eq!(key_tags(&opts(&[]), &filter).unwrap(), filter);
        assert_eq!(
            key_tags(&opts(&["tag:x", "tag:tart"]), &filter).unwrap(),
            vec!["tag:x", "tag:tart"]
        );
        assert!(key_tags(&opts(&["tag:x"]), &filter).is_err());
        assert!(key_tags(&opts(&["x"]), &[]).is_err());
        assert!(key_tags(&opts(&[]), &[]).unwrap().is_empty());
    }
}
