use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: the store's writer frees what request tasks
/// allocated, and glibc's malloc took 22 % of the trading benchmark's CPU (mimalloc: 14 %).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The DABS platform on one machine: embedded store, in-process queues, local keys,
/// emails written to a folder.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Port of the API on 127.0.0.1.
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Where the store, the keys and the mail folder live.
    #[arg(long, default_value = ".data")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Measure a part of the platform and print one JSON line per measurement.
    Bench {
        #[command(subcommand)]
        what: local::bench::Bench,
    },
    /// Print the whole API's OpenAPI document (committed as docs/openapi.json).
    Openapi,
    /// Create the first two operators in a deployed stack (AWS adapters, from the same
    /// environment variables the functions get): a super-admin and a co-operator, so the
    /// first change requests have a second operator to approve them. Prints each password
    /// and TOTP secret once.
    BootstrapOperators {
        /// The super-admin's address.
        #[arg(long)]
        email: String,
        /// The co-operator's address (another person).
        #[arg(long)]
        co_operator: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Bench { what }) => return local::bench::run(what).await,
        Some(Command::Openapi) => {
            println!("{}", serde_json::to_string_pretty(&local::docs())?);
            return Ok(());
        }
        Some(Command::BootstrapOperators { email, co_operator }) => {
            let platform = shared::Platform::aws().await?;
            let operators = local::seed::bootstrap_operators(&platform, &email, &co_operator).await?;
            println!("{}", serde_json::to_string_pretty(&operators)?);
            return Ok(());
        }
        None => {}
    }
    let platform = shared::Platform::embedded(&cli.data_dir)?;
    if local::seed::seed_once(&platform, &cli.data_dir).await? {
        println!("Demo users created: credentials and TOTP secrets in {}", cli.data_dir.join("seed.json").display());
    }
    let running = local::start(platform, SocketAddr::from((Ipv4Addr::LOCALHOST, cli.port))).await?;
    println!("DABS platform listening on http://{} (data in {})", running.addr, cli.data_dir.display());
    println!("Try: curl http://{}/health", running.addr);
    tokio::signal::ctrl_c().await?;
    println!("Shutting down");
    running.stop().await;
    Ok(())
}
