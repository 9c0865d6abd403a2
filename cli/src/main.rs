//! The `nur` binary: its flags and commands (the crate's library does the work).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use nur_cli::cluster::Cluster;
use nur_cli::nurfile::Nurfile;
use nur_cli::progress::Progress;
use nur_cli::store::{Store, Upload};
use nur_cli::{build, call, console, deploy, logs, names, new, rm, status, template};

#[derive(Parser)]
#[command(name = "nur", version, about = "Build, deploy and run Nur functions")]
struct Cli {
    /// The nurfile (its directory is the repository root paths start at);
    /// `-f FILE` in new, build and deploy.
    #[arg(
        long = "nurfile",
        global = true,
        default_value = "nurfile.yaml",
        env = "NUR_FILE"
    )]
    nurfile: PathBuf,
    /// The namespace (else the nurfile's `namespace`, else the kubeconfig's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A new function from a template, and its nurfile entry.
    New {
        #[command(flatten)]
        nurfile: NurfileFlag,
        template: template::Template,
        /// The function's name (it becomes a Kubernetes name: see `nur build`).
        name: String,
    },
    /// Build functions (all without NAME): build command, ABI check, zstd
    /// into .nur/build/<name>.wasm.zst; prints name, size and sha256.
    Build {
        #[command(flatten)]
        nurfile: NurfileFlag,
        /// Functions to build, by name or Kubernetes name.
        names: Vec<String>,
    },
    /// Build, upload (content-addressed) and apply functions (all without
    /// NAME), and wait until each is Ready.
    Deploy {
        #[command(flatten)]
        nurfile: NurfileFlag,
        /// Functions to deploy, by name or Kubernetes name.
        names: Vec<String>,
        /// Where modules go (else the nurfile's `store`, else NUR_STORE).
        #[arg(long)]
        store: Option<String>,
        /// How long to wait for each function to become Ready.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// The functions of the namespace.
    Ls,
    /// A function's conditions, module, pods and recent events.
    Status { name: String },
    /// The log lines of every pod of a function, merged in time.
    Logs {
        name: String,
        /// Keep printing new lines.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only lines newer than this (e.g. 10m, 1h).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
    },
    /// Send bytes or an HTTP request to a function and print its answer.
    Call {
        name: String,
        /// Send this text.
        #[arg(long, conflicts_with = "file")]
        data: Option<String>,
        /// Send the bytes of this file.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Send an HTTP/1.1 request, `METHOD /path` (the data or file is
        /// its body).
        #[arg(long)]
        http: Option<String>,
        /// Longest wait for the answer.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Call through nur-gateway at HOST:PORT (its HTTP port) when the
        /// function has an HTTP route, instead of a port-forward to a pod.
        #[arg(long, env = "NUR_GATEWAY")]
        gateway: Option<String>,
    },
    /// The web console: functions, routes, live logs, metrics and a
    /// try-it client in the browser, with your kubeconfig's rights.
    Console {
        /// Where it listens (beyond loopback anyone who reaches it acts
        /// with your credentials).
        #[arg(long, default_value = "127.0.0.1:8090", env = "NUR_CONSOLE_LISTEN")]
        listen: std::net::SocketAddr,
        /// Open it in the default browser.
        #[arg(long)]
        open: bool,
        /// Try-it calls go through nur-gateway at HOST:PORT for functions
        /// with an HTTP route.
        #[arg(long, env = "NUR_GATEWAY")]
        gateway: Option<String>,
    },
    /// Delete a function (its module stays in the store unless --purge).
    Rm {
        name: String,
        /// Delete its module from the store too, unless another function
        /// serves it.
        #[arg(long)]
        purge: bool,
    },
}

/// `-f FILE`, the short form of `--nurfile` where it does not mean
/// `--follow` (`nur logs -f`).
#[derive(clap::Args)]
struct NurfileFlag {
    /// The nurfile (same as --nurfile).
    #[arg(short = 'f', value_name = "FILE")]
    file: Option<PathBuf>,
}

impl NurfileFlag {
    fn or<'a>(&'a self, file: &'a PathBuf) -> &'a PathBuf {
        self.file.as_ref().unwrap_or(file)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Modules may use WASI preview 1, as the worker serves it.
    nur_module::abi::allow_wasi_preview1();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The Kubernetes name a command's NAME argument means.
fn label(name: &str) -> anyhow::Result<String> {
    Ok(names::dns_label(name)?)
}

/// The namespace of the nurfile, when there is one.
fn nurfile_namespace(cli: &Cli) -> Option<String> {
    Nurfile::load(&cli.nurfile).ok().and_then(|n| n.namespace)
}

async fn connect(cli: &Cli) -> anyhow::Result<Cluster> {
    let from_file = nurfile_namespace(cli);
    Ok(Cluster::connect(cli.namespace.as_deref(), from_file.as_deref()).await?)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Cmd::New {
            nurfile,
            template,
            name,
        } => {
            let file = nurfile.or(&cli.nurfile);
            let dir = new::new_function(file, *template, name)?;
            println!(
                "created {} and its entry in {}; build it with `nur build`",
                dir.display(),
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Build { nurfile, names } => {
            let n = Nurfile::load(nurfile.or(&cli.nurfile))?;
            let functions = n.select(names)?;
            let mut failed = false;
            for result in build::build_all(&n.root, &functions) {
                match result {
                    Ok(b) => println!(
                        "{}\t{} bytes ({} before zstd)\tsha256:{}\t{}",
                        b.label,
                        b.bytes.len(),
                        b.wasm_size,
                        b.sha256,
                        b.path.strip_prefix(".").unwrap_or(&b.path).display()
                    ),
                    Err(e) => {
                        failed = true;
                        eprintln!("error: {e}");
                    }
                }
            }
            Ok(exit(failed))
        }
        Cmd::Deploy {
            nurfile,
            names,
            store,
            timeout,
        } => {
            let n = Nurfile::load(nurfile.or(&cli.nurfile))?;
            let functions = n.select(names)?;
            let store = Store::resolve(store.as_deref(), n.store.as_deref())?;
            store.check_credentials()?;
            let cluster =
                Cluster::connect(cli.namespace.as_deref(), n.namespace.as_deref()).await?;
            let width = functions.iter().map(|f| f.label.len()).max().unwrap_or(0);
            let progress = Progress::new();
            let lines: Vec<_> = functions
                .iter()
                .map(|f| {
                    let line = progress.line(&f.label, width);
                    line.step("building");
                    line
                })
                .collect();
            let root = n.root.clone();
            let to_build = functions.clone();
            let built =
                tokio::task::spawn_blocking(move || build::build_all(&root, &to_build)).await?;
            let mut failed = false;
            let mut ok = Vec::new();
            for ((f, b), line) in functions.iter().zip(built).zip(lines) {
                match b {
                    Ok(b) => ok.push((f, b, line)),
                    Err(e) => {
                        failed = true;
                        eprintln!("error: {e}");
                    }
                }
            }
            if failed {
                eprintln!("error: nothing deployed: a build failed");
                return Ok(ExitCode::FAILURE);
            }
            let runs = ok.iter().map(|(f, b, line)| {
                let (cluster, store) = (&cluster, &store);
                async move {
                    let result = deploy::deploy(cluster, store, f, b, *timeout, line).await;
                    line.finish();
                    result
                }
            });
            let results = futures::future::join_all(runs).await;
            let (mut uploaded, mut changed) = (0, 0);
            for result in &results {
                match result {
                    Ok(d) => {
                        uploaded += usize::from(d.upload == Upload::Written);
                        changed += usize::from(d.changed);
                        println!("{}", deploy::outcome(d, width));
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("error: {e}");
                    }
                }
            }
            if !failed && uploaded == 0 && changed == 0 {
                println!(
                    "nothing changed: {} functions up to date in namespace {}, nothing uploaded",
                    results.len(),
                    cluster.namespace
                );
            } else if !failed {
                println!(
                    "deployed to namespace {}: {changed} changed, {uploaded} uploaded to {}",
                    cluster.namespace,
                    store.url()
                );
            }
            Ok(exit(failed))
        }
        Cmd::Ls => {
            let cluster = connect(&cli).await?;
            print!("{}", status::ls(&cluster).await?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { name } => {
            let cluster = connect(&cli).await?;
            print!("{}", status::status(&cluster, &label(name)?).await?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Logs {
            name,
            follow,
            since,
        } => {
            let cluster = connect(&cli).await?;
            let since = since.map(|d| d.as_secs().max(1) as i64);
            if *follow {
                logs::follow(&cluster, &label(name)?, since).await?;
            } else {
                for line in logs::logs(&cluster, &label(name)?, since).await? {
                    println!("{}", line.render());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Call {
            name,
            data,
            file,
            http,
            timeout,
            gateway,
        } => {
            let body = match (data, file) {
                (Some(d), _) => d.clone().into_bytes(),
                (None, Some(f)) => std::fs::read(f)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?,
                (None, None) => Vec::new(),
            };
            let label = label(name)?;
            let input = match http {
                Some(line) => call::Input::Http {
                    request_line: line.clone(),
                    headers: Vec::new(),
                    body,
                },
                None => call::Input::Bytes(body),
            };
            let cluster = connect(&cli).await?;
            let f = status::get(&cluster, &label).await?;
            let route = f.spec.routes.as_ref().and_then(|r| r.http.first());
            let answer = match (gateway, route) {
                (Some(gateway), Some(route)) => {
                    let bytes = call::through_gateway(input, route)?;
                    call::call_gateway(gateway, &bytes, *timeout).await?
                }
                _ => {
                    let bytes = call::encode(input, &label)?;
                    call::call(&cluster, &label, &bytes, *timeout).await?
                }
            };
            use std::io::Write;
            std::io::stdout().write_all(&answer)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Console {
            listen,
            open,
            gateway,
        } => {
            let namespace = cli.namespace.clone().or_else(|| nurfile_namespace(&cli));
            let app = console::App::connect(namespace.as_deref(), gateway.clone()).await;
            let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
                anyhow::anyhow!("cannot listen on {listen}: {e} (--listen picks another address)")
            })?;
            let url = format!("http://{}/", listener.local_addr()?);
            match app.context() {
                Some((ns, cluster)) => {
                    println!(
                        "nur console on {url} (namespace {ns}, cluster {cluster}); Ctrl-C stops it"
                    )
                }
                None => println!(
                    "nur console on {url} (no cluster: the page says why); Ctrl-C stops it"
                ),
            }
            if !listen.ip().is_loopback() {
                eprintln!(
                    "warning: {listen} is beyond loopback: whoever reaches it acts with your kubeconfig's credentials"
                );
            }
            if *open {
                open_browser(&url);
            }
            console::serve(listener, app, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Rm { name, purge } => {
            let cluster = connect(&cli).await?;
            let label = label(name)?;
            match rm::rm(&cluster, &label, *purge).await? {
                rm::Module::Kept(url) => {
                    println!("deleted {label}; its module stays at {url} (--purge deletes it)")
                }
                rm::Module::Purged(url) => println!("deleted {label} and its module {url}"),
                rm::Module::Shared(url, others) => println!(
                    "deleted {label}; its module {url} stays: {} serve it too",
                    others.join(", ")
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Opens `url` with the desktop's opener; says so when there is none.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        eprintln!("cannot run {opener} ({e}): open {url} in a browser");
    }
}

fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
