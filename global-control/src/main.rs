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
        /// Directory for the CA and certificates (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Cell ids, comma-separated: uk,mt,dk,se,es.
        #[arg(long, value_delimiter = ',', required = true, value_parser = cell_id)]
        cells: Vec<String>,
    },
}

/// A cell id as region files name them: 1 to 16 lower-case letters or digits.
fn cell_id(text: &str) -> Result<String, String> {
    let ok = !text.is_empty() && text.len() <= 16 && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    ok.then(|| text.to_owned())
        .ok_or_else(|| format!("`{text}` is not a cell id (1 to 16 lower-case letters or digits)"))
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
