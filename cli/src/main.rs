//! The `nur` binary: its flags and commands (the crate's library does the work).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use nur_cli::{build, new, nurfile, template};

#[derive(Parser)]
#[command(name = "nur", version, about = "Build and run Nur functions")]
struct Cli {
    /// The nurfile (its directory is the repository root paths start at).
    #[arg(
        short = 'f',
        long,
        global = true,
        default_value = "nurfile.yaml",
        env = "NUR_FILE"
    )]
    file: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A new function from a template, and its nurfile entry.
    New {
        template: template::Template,
        /// The function's name (it becomes a Kubernetes name: see `nur build`).
        name: String,
    },
    /// Build functions (all without NAME): build command, ABI check, zstd
    /// into .nur/build/<name>.wasm.zst; prints name, size and sha256.
    Build {
        /// Functions to build, by name or Kubernetes name.
        names: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::New { template, name } => {
            let dir = new::new_function(&cli.file, template, &name)?;
            println!(
                "created {} and its entry in {}; build it with `nur build`",
                dir.display(),
                cli.file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Build { names } => {
            let n = nurfile::Nurfile::load(&cli.file)?;
            let functions = n.select(&names)?;
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
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
