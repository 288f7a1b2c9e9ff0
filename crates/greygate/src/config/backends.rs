//! `[store.postgres]` and `[store.redis]`: the shared-state backends'
//! settings, as written and validated into the store crate's options.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, ensure};
use greygate_store::postgres::{self, PostgresOptions};
use greygate_store::redis::{self as redis_store, ConnectOptions, RedisOptions, Topology};
use greygate_store::tls::TlsOptions;
use serde::{Deserialize, Serialize};

use super::duration::Human;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPostgres {
    /// libpq-style connection string (`host=db1 user=greygate dbname=mail
    /// password=...`) or a `postgres://` URL.
    pub url: String,
    /// Schema for greygate's tables; created and migrated at start.
    pub schema: String,
    /// Most connections per greygate process.
    pub pool_size: usize,
    /// Longest wait to connect, or for a free pooled connection.
    pub connect_timeout: Human,
    /// Connect with TLS, verifying the server's certificate.
    pub tls: bool,
    /// CA certificate(s) (PEM) for `tls`; the system's trust store if unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
}

impl Default for RawPostgres {
    fn default() -> Self {
        RawPostgres {
            url: "host=127.0.0.1 port=5432 user=greygate dbname=greygate".into(),
            schema: "greygate".into(),
            pool_size: 8,
            connect_timeout: Human::secs(5),
            tls: false,
            tls_ca: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One server at `url`.
    Single,
    /// A Redis Cluster reached through `nodes`.
    Cluster,
    /// The master of `service`, as told by `sentinels`.
    Sentinel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    pub mode: RedisMode,
    /// `redis://host:port/db` of the server (mode = "single").
    pub url: String,
    /// `redis://host:port` of some cluster nodes (mode = "cluster").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// `redis://host:port` of the Sentinels (mode = "sentinel").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sentinels: Vec<String>,
    /// The Sentinel service (master group) name.
    pub service: String,
    /// ACL user name (Redis 6+); unset for the default user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password for AUTH; unset when the server needs none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Database number (not for a cluster).
    pub db: i64,
    /// Prepended to every key greygate writes.
    pub prefix: String,
    /// Connect with TLS, verifying the server's certificate.
    pub tls: bool,
    /// CA certificate(s) (PEM) for `tls`; the system's trust store if unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    pub connect_timeout: Human,
    /// Longest wait for one reply.
    pub response_timeout: Human,
}

impl Default for RawRedis {
    fn default() -> Self {
        RawRedis {
            mode: RedisMode::Single,
            url: "redis://127.0.0.1:6379/".into(),
            nodes: Vec::new(),
            sentinels: Vec::new(),
            service: "mymaster".into(),
            username: None,
            password: None,
            db: 0,
            prefix: "greygate:".into(),
            tls: false,
            tls_ca: None,
            connect_timeout: Human::secs(5),
            response_timeout: Human::secs(5),
        }
    }
}

fn nonzero(name: &str, d: Human) -> Result<Duration> {
    ensure!(!d.0.is_zero(), "{name} must be more than zero");
    Ok(d.0)
}

impl RawPostgres {
    pub fn options(&self) -> Result<PostgresOptions> {
        ensure!(
            postgres::valid_schema_name(&self.schema),
            "store.postgres.schema must be letters, digits and _ (not starting with a digit), got {:?}",
            self.schema
        );
        ensure!(self.pool_size > 0, "store.postgres.pool_size must be at least 1");
        Ok(PostgresOptions {
            url: self.url.clone(),
            schema: self.schema.clone(),
            pool_size: self.pool_size,
            connect_timeout: nonzero("store.postgres.connect_timeout", self.connect_timeout)?,
            tls: TlsOptions { enabled: self.tls, ca_file: self.tls_ca.clone() },
        })
    }
}

impl RawRedis {
    pub fn options(&self) -> Result<RedisOptions> {
        ensure!(
            redis_store::valid_prefix(&self.prefix),
            "store.redis.prefix must be letters, digits and :_.- (at most 64), got {:?}",
            self.prefix
        );
        let topology = match self.mode {
            RedisMode::Single => Topology::Single { url: self.url.clone() },
            RedisMode::Cluster => {
                ensure!(!self.nodes.is_empty(), "store.redis.nodes must name at least one node in cluster mode");
                ensure!(self.db == 0, "store.redis.db must be 0 in cluster mode");
                Topology::Cluster { nodes: self.nodes.clone() }
            }
            RedisMode::Sentinel => {
                ensure!(!self.sentinels.is_empty(), "store.redis.sentinels must name at least one Sentinel");
                ensure!(!self.service.is_empty(), "store.redis.service must not be empty");
                Topology::Sentinel { sentinels: self.sentinels.clone(), service: self.service.clone() }
            }
        };
        Ok(RedisOptions {
            connect: ConnectOptions {
                topology,
                username: self.username.clone(),
                password: self.password.clone(),
                db: self.db,
                tls: TlsOptions { enabled: self.tls, ca_file: self.tls_ca.clone() },
                connect_timeout: nonzero("store.redis.connect_timeout", self.connect_timeout)?,
                response_timeout: nonzero("store.redis.response_timeout", self.response_timeout)?,
            },
            prefix: self.prefix.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Backend, Config, RawConfig};

    fn parse(text: &str) -> anyhow::Result<Config> {
        let raw: RawConfig = toml::from_str(text)?;
        Config::from_raw(raw, None)
    }

    #[test]
    fn postgres_and_redis_sections_become_store_options() {
        let c = parse(
            "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"host=db1 user=gg dbname=mail\"\nschema = \"grey\"\npool_size = 3\ntls = true\n",
        )
        .unwrap();
        assert_eq!(c.store.backend, Backend::Postgres);
        let pg = c.store.postgres.expect("postgres options");
        assert_eq!(
            (pg.url.as_str(), pg.schema.as_str(), pg.pool_size, pg.tls.enabled),
            ("host=db1 user=gg dbname=mail", "grey", 3, true)
        );
        assert!(c.store.redis.is_none());

        let c = parse(
            "[store]\nbackend = \"redis\"\n[store.redis]\nmode = \"sentinel\"\nsentinels = [\"redis://s1:26379\"]\nservice = \"grey\"\npassword = \"pw\"\nprefix = \"mx:\"\n",
        )
        .unwrap();
        let r = c.store.redis.expect("redis options");
        assert_eq!(r.prefix, "mx:");
        assert_eq!(r.connect.password.as_deref(), Some("pw"));
        assert!(
            matches!(r.connect.topology, greygate_store::redis::Topology::Sentinel { ref service, .. } if service == "grey")
        );
    }

    #[test]
    fn bad_backend_settings_are_named() {
        let cases = [
            ("[store]\nbackend = \"redis\"\n[store.redis]\nprefix = \"a*b\"\n", "store.redis.prefix"),
            ("[store]\nbackend = \"redis\"\n[store.redis]\nmode = \"cluster\"\n", "store.redis.nodes"),
            ("[store]\nbackend = \"redis\"\n[store.redis]\nmode = \"sentinel\"\n", "store.redis.sentinels"),
            ("[store]\nbackend = \"postgres\"\n[store.postgres]\nschema = \"a-b\"\n", "store.postgres.schema"),
            ("[store]\nbackend = \"postgres\"\n[store.postgres]\npool_size = 0\n", "store.postgres.pool_size"),
            ("[store]\nbackend = \"postgres\"\n[store.postgres]\nshema = \"x\"\n", "unknown field `shema`"),
        ];
        for (text, want) in cases {
            let error = format!("{:#}", parse(text).expect_err(text));
            assert!(error.contains(want), "{text}: {error}");
        }
    }
}
