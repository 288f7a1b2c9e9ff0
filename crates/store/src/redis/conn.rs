//! Connections to a single Redis node, a Redis Cluster, or the master a
//! set of Sentinels points at, behind one [`ConnectionLike`].
//!
//! Reconnection: a single node goes through redis-rs's
//! `ConnectionManager`, which reconnects in the background after an I/O
//! error; the cluster connection follows slot moves and reconnects to
//! nodes by itself; for Sentinel, a connection that failed is dropped and
//! the next command asks the Sentinels for the (possibly new) master.
//! Commands issued while the server is away fail at once, and the caller
//! applies the fail mode.

use std::path::Path;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisFuture, TlsCertificates, Value};
use tokio::sync::Mutex;

use super::redis_error;
use crate::StoreError;
use crate::tls::TlsOptions;

/// Where the Redis data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server: `redis://host:port/db` (or `rediss://` for TLS).
    Single { url: String },
    /// A Redis Cluster: some of its nodes' URLs; the rest is discovered.
    Cluster { nodes: Vec<String> },
    /// The master of `service` as named by these Sentinels' URLs.
    Sentinel { sentinels: Vec<String>, service: String },
}

/// How to reach and authenticate to Redis.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub topology: Topology,
    /// ACL user name; `None` for the default user.
    pub username: Option<String>,
    /// Password (`AUTH`); `None` when the server needs none. Overrides one
    /// in the URL.
    pub password: Option<String>,
    /// Database number (single node and Sentinel; a cluster has only 0).
    pub db: i64,
    pub tls: TlsOptions,
    pub connect_timeout: Duration,
    /// Longest wait for one reply before the command fails.
    pub response_timeout: Duration,
}

/// The live connection, shared by every caller (it multiplexes).
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Box<Sentinel>),
}

/// The Sentinel client and the master connection it last gave.
pub struct Sentinel {
    client: Mutex<SentinelClient>,
    current: Mutex<Option<MultiplexedConnection>>,
    options: ConnectOptions,
}

/// One handle for a command or a few: cheap to make, cloned from the
/// shared connection.
#[derive(Clone)]
pub enum Handle {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Plain(MultiplexedConnection),
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Handle::Single(c) => c.req_packed_command(cmd),
            Handle::Cluster(c) => c.req_packed_command(cmd),
            Handle::Plain(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Handle::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Handle::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Handle::Plain(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Handle::Single(c) => c.get_db(),
            Handle::Cluster(c) => c.get_db(),
            Handle::Plain(c) => c.get_db(),
        }
    }
}

fn certificates(tls: &TlsOptions) -> Result<TlsCertificates, StoreError> {
    let root_cert = match &tls.ca_file {
        Some(path) => Some(read_pem(path)?),
        None => None,
    };
    Ok(TlsCertificates { client_tls: None, root_cert })
}

fn read_pem(path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| StoreError::Invalid(format!("cannot read CA file {}: {e}", path.display())))
}

/// A node's connection info: the URL, with TLS, credentials and database
/// from the options applied.
fn node_info(url: &str, options: &ConnectOptions) -> Result<ConnectionInfo, StoreError> {
    let mut info = url.into_connection_info().map_err(|e| StoreError::Invalid(format!("Redis URL {url:?}: {e}")))?;
    if options.tls.enabled
        && let ConnectionAddr::Tcp(host, port) = info.addr().clone()
    {
        info = info.set_addr(ConnectionAddr::TcpTls { host, port, insecure: false, tls_params: None });
    }
    let mut redis = info.redis_settings().clone();
    if let Some(user) = &options.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = &options.password {
        redis = redis.set_password(password);
    }
    if options.db != 0 {
        redis = redis.set_db(options.db);
    }
    Ok(info.set_redis_settings(redis))
}

fn client(info: ConnectionInfo, options: &ConnectOptions) -> Result<Client, StoreError> {
    let client = if options.tls.enabled {
        Client::build_with_tls(info, certificates(&options.tls)?)
    } else {
        Client::open(info)
    };
    client.map_err(|e| StoreError::Invalid(format!("Redis: {e}")))
}

impl Connection {
    pub async fn open(options: &ConnectOptions) -> Result<Connection, StoreError> {
        if options.tls.enabled {
            // redis-rs takes rustls' process-wide provider; greygate uses ring.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        match &options.topology {
            Topology::Single { url } => {
                let client = client(node_info(url, options)?, options)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(options.connect_timeout))
                    .set_response_timeout(Some(options.response_timeout))
                    // Fail fast while the server is away; the manager keeps
                    // reconnecting on the next commands.
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let manager = ConnectionManager::new_with_config(client, config).await.map_err(redis_error)?;
                Ok(Connection::Single(manager))
            }
            Topology::Cluster { nodes } => {
                let infos = nodes.iter().map(|n| node_info(n, options)).collect::<Result<Vec<_>, _>>()?;
                let mut builder = redis::cluster::ClusterClientBuilder::new(infos)
                    .connection_timeout(options.connect_timeout)
                    .response_timeout(options.response_timeout)
                    .retries(1);
                if let Some(user) = &options.username {
                    builder = builder.username(user);
                }
                if let Some(password) = &options.password {
                    builder = builder.password(password);
                }
                if options.tls.enabled {
                    builder = builder.tls(redis::TlsMode::Secure).certs(certificates(&options.tls)?);
                }
                let client = builder.build().map_err(|e| StoreError::Invalid(format!("Redis Cluster: {e}")))?;
                let conn = client.get_async_connection().await.map_err(redis_error)?;
                Ok(Connection::Cluster(conn))
            }
            Topology::Sentinel { sentinels, service } => {
                let mut redis_info = redis::RedisConnectionInfo::default();
                if let Some(user) = &options.username {
                    redis_info = redis_info.set_username(user);
                }
                if let Some(password) = &options.password {
                    redis_info = redis_info.set_password(password);
                }
                redis_info = redis_info.set_db(options.db);
                let mut node = SentinelNodeConnectionInfo::default().set_redis_connection_info(redis_info);
                if options.tls.enabled {
                    node = node.set_tls_mode(redis::TlsMode::Secure);
                }
                let client =
                    SentinelClient::build(sentinels.clone(), service.clone(), Some(node), SentinelServerType::Master)
                        .map_err(|e| StoreError::Invalid(format!("Redis Sentinel: {e}")))?;
                let conn = Connection::Sentinel(Box::new(Sentinel {
                    client: Mutex::new(client),
                    current: Mutex::new(None),
                    options: options.clone(),
                }));
                conn.handle().await?;
                Ok(conn)
            }
        }
    }

    /// A handle to send commands on.
    pub async fn handle(&self) -> Result<Handle, StoreError> {
        match self {
            Connection::Single(c) => Ok(Handle::Single(c.clone())),
            Connection::Cluster(c) => Ok(Handle::Cluster(c.clone())),
            Connection::Sentinel(s) => {
                let Sentinel { client, current, options } = &**s;
                let mut current = current.lock().await;
                if let Some(c) = current.as_ref() {
                    return Ok(Handle::Plain(c.clone()));
                }
                let master = tokio::time::timeout(options.connect_timeout, client.lock().await.async_get_client())
                    .await
                    .map_err(|_| StoreError::Unavailable("Redis Sentinel: no answer".into()))?
                    .map_err(redis_error)?;
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(options.connect_timeout))
                    .set_response_timeout(Some(options.response_timeout));
                let conn = master.get_multiplexed_async_connection_with_config(&config).await.map_err(redis_error)?;
                *current = Some(conn.clone());
                Ok(Handle::Plain(conn))
            }
        }
    }

    /// After a failed command: under Sentinel, forget the connection so the
    /// next command asks where the master is now.
    pub async fn failed(&self, error: &redis::RedisError) {
        if let Connection::Sentinel(s) = self
            && (error.is_io_error()
                || error.is_connection_dropped()
                || error.is_timeout()
                || error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly))
        {
            s.current.lock().await.take();
        }
    }

    /// The nodes whose keys a SCAN must visit: every master of a cluster,
    /// or `None` for the one server.
    pub async fn scan_nodes(&self) -> Result<Option<Vec<(String, u16)>>, StoreError> {
        let Connection::Cluster(c) = self else { return Ok(None) };
        let mut c = c.clone();
        let text: Value = c
            .route_command(
                redis::cmd("CLUSTER").arg("NODES").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await
            .map_err(redis_error)?;
        let text: String = redis::from_redis_value(text).map_err(parse_error)?;
        Ok(Some(cluster_masters(&text)))
    }

    /// One SCAN step on `node` (a cluster master), or on the server.
    pub async fn scan_step(
        &self,
        node: Option<&(String, u16)>,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(count);
        let value = match (self, node) {
            (Connection::Cluster(c), Some((host, port))) => {
                let routing =
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: host.clone(), port: *port });
                c.clone().route_command(cmd, routing).await
            }
            _ => {
                let mut h = self.handle().await?;
                let r = cmd.query_async::<Value>(&mut h).await;
                if let Err(e) = &r {
                    self.failed(e).await;
                }
                r
            }
        };
        redis::from_redis_value(value.map_err(redis_error)?).map_err(parse_error)
    }
}

fn parse_error(e: redis::ParsingError) -> StoreError {
    StoreError::Invalid(format!("Redis: unexpected reply: {e}"))
}

/// The masters in `CLUSTER NODES` output that are not failing:
/// `id host:port@cport flags master ...`.
fn cluster_masters(text: &str) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else { continue };
        if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
            continue;
        }
        let addr = addr.split('@').next().unwrap_or(addr);
        let addr = addr.split(',').next().unwrap_or(addr);
        if let Some((host, port)) = addr.rsplit_once(':')
            && let Ok(port) = port.parse()
        {
            out.push((host.trim_matches(['[', ']']).to_owned(), port));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_masters_from_cluster_nodes() {
        let text = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003,host.example master - 0 1426238318243 3 connected 10923-16383
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
aaaa 127.0.0.1:30009@40009 master,fail - 0 0 1 disconnected
";
        let masters = super::cluster_masters(text);
        assert_eq!(
            masters,
            [("127.0.0.1".to_owned(), 30002), ("127.0.0.1".to_owned(), 30003), ("127.0.0.1".to_owned(), 30001)]
        );
    }
}
