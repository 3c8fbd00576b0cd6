//! `global-control`: the control plane's command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "global-control", about = "The platform's global control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a development CA and certificates for the control plane, each cell and the router
    /// (existing files are kept; missing ones are added).
    Certs {
        #[arg(long)]
        out: PathBuf,
        /// Cell ids, comma-separated: uk,mt,dk,se,es.
        #[arg(long, value_delimiter = ',')]
        cells: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Certs { out, cells } => {
            let mut names = vec!["control".to_owned(), "router".to_owned()];
            names.extend(cells);
            let written = replication::tls::generate(&out, &names)?;
            for path in &written {
                println!("wrote {}", path.display());
            }
            if written.is_empty() {
                println!("{} already holds every certificate asked for", out.display());
            }
            Ok(())
        }
    }
}
