//! The command line: `serve`, `check-config`, `explain` and the admin
//! commands, all in one binary.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "greygate", version, about = "A greylisting mail gateway", propagate_version = true)]
pub struct Cli {
    /// Config file (TOML). Without it, the built-in default is used: the
    /// Postfix policy server on 127.0.0.1:10023 with greygate.db in the
    /// working directory.
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: the front ends the config enables (Postfix policy server, SMTP proxy).
    Serve,
    /// Validate the config and print the effective configuration, defaults
    /// included.
    CheckConfig,
    /// Show how greygate would decide on a message, and why, without
    /// changing anything.
    Explain(ExplainArgs),
    /// Greylisting entries (triplets).
    #[command(subcommand)]
    Entries(EntriesCommand),
    /// Auto-whitelisted clients and the passes counted for them.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Trusted networks (skip every check).
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Whitelist (skip greylisting).
    #[command(subcommand)]
    Whitelist(ListCommand),
    /// Blacklist (refuse).
    #[command(subcommand)]
    Blacklist(ListCommand),
    /// Entries by state and decisions by outcome.
    Stats(OutputArgs),
    /// Delete expired entries (or all entries with --all), with progress.
    Purge(PurgeArgs),
    /// Import list files from other greylisters.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Run as a drop-in for qmail's greydaemon, with its command line:
    /// `greydaemon [-d] [-u user] [-w whitelist] [-s min] [-t days] [-g hours] [-m min] ipaddr[:port] savefile`.
    Greydaemon(crate::greydaemon::GreydaemonArgs),
    /// Copy the greylisting state (entries, clients, lists, counters) from
    /// another store into the configured one, e.g. SQLite into Redis or
    /// PostgreSQL, with a progress bar.
    CopyStore(CopyStoreArgs),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct CopySource {
    /// The source: the store configured in this greygate config file.
    #[arg(long, value_name = "FILE")]
    pub from_config: Option<PathBuf>,
    /// The source: this SQLite file.
    #[arg(long, value_name = "FILE")]
    pub from_sqlite: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CopyStoreArgs {
    #[command(flatten)]
    pub from: CopySource,
    /// Records written per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Client IP address.
    #[arg(long, value_name = "IP")]
    pub client_ip: IpAddr,
    /// Verified client host name (Postfix's client_name).
    #[arg(long, value_name = "NAME")]
    pub client_name: Option<String>,
    /// HELO/EHLO name.
    #[arg(long)]
    pub helo: Option<String>,
    /// Envelope sender; "" or "<>" for the null sender.
    #[arg(long)]
    pub sender: String,
    /// Envelope recipient.
    #[arg(long)]
    pub recipient: String,
    /// SASL login name, if the client authenticated.
    #[arg(long, value_name = "USER")]
    pub sasl_username: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    Pending,
    Passed,
}

#[derive(Debug, Args, Default)]
pub struct EntryFilterArgs {
    /// Client network or address (entries inside it), or an exact key.
    #[arg(long, value_name = "NET")]
    pub client: Option<String>,
    /// Sender pattern, `*` as wildcard, case-insensitive.
    #[arg(long, value_name = "GLOB")]
    pub sender: Option<String>,
    /// Recipient pattern, `*` as wildcard, case-insensitive.
    #[arg(long, value_name = "GLOB")]
    pub recipient: Option<String>,
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
}

#[derive(Debug, Subcommand)]
pub enum EntriesCommand {
    /// List entries matching the filters.
    List {
        #[command(flatten)]
        filter: EntryFilterArgs,
        /// Show at most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show the entry a message would use, in full.
    Show {
        /// Client IP address.
        #[arg(long, value_name = "IP")]
        client_ip: IpAddr,
        #[arg(long)]
        sender: String,
        #[arg(long)]
        recipient: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete entries matching the filters (at least one filter, or --all).
    Delete {
        #[command(flatten)]
        filter: EntryFilterArgs,
        /// Delete every entry.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// List client records (auto-whitelist counts).
    List {
        /// Client network or address.
        #[arg(long, value_name = "NET")]
        client: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete client records in a network (their counts start over).
    Delete {
        #[arg(long, value_name = "NET")]
        client: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust a network: its clients skip every check.
    Add {
        /// Address or CIDR network.
        network: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    Remove {
        network: String,
    },
    List(OutputArgs),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// Client: address, CIDR, host name suffix or /regex/.
    #[arg(long)]
    pub client: Option<String>,
    /// Sender: user@domain, user@, domain, @domain, /regex/ or <>.
    #[arg(long)]
    pub sender: Option<String>,
    /// Recipient: user@domain, user@, domain, @domain, /regex/.
    #[arg(long)]
    pub recipient: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// Add an entry (takes effect within `store.lists_refresh`).
    Add {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Remove an entry.
    Remove {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List the entries kept in the store (config and file entries are in
    /// `check-config`).
    List(OutputArgs),
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Delete every entry and client record, not only expired ones (lists
    /// and counters are kept).
    #[arg(long)]
    pub all: bool,
    /// Records deleted per transaction.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImportList {
    Whitelist,
    Blacklist,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// A postgrey whitelist_clients file (host names, addresses, /regex/).
    PostgreyClients {
        file: PathBuf,
        /// Which list receives the entries.
        #[arg(long, value_enum, default_value = "whitelist")]
        into: ImportList,
    },
    /// A postgrey whitelist_recipients file (user@, domain, /regex/).
    PostgreyRecipients {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "whitelist")]
        into: ImportList,
    },
}
