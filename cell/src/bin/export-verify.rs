//! `export-verify`: a regulator's check of one export, with nothing of the platform but what it
//! is given: the export, the cell's pinned public key and a copy of the cell's data directory.
//! Prints a report; exits 0 when the export verifies, 1 when it does not (naming the first
//! failure), 2 when it cannot check.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "export-verify", about = "Verify a regulator export against the cell's audit chain")]
struct Args {
    /// The export's directory (as `cell export build --out` or a download wrote it).
    #[arg(long)]
    export: PathBuf,
    /// The cell's audit public key (hex), pinned by the regulator.
    #[arg(long)]
    public_key: String,
    /// A copy of the cell's data directory (its store and vault).
    #[arg(long)]
    cell_data: PathBuf,
    /// An inclusion proof (`GET /exports/{id}/proof?seq=N`) to check against the manifest's root.
    #[arg(long)]
    proof: Option<PathBuf>,
    /// Denmark's TamperToken service (`http://HOST:PORT`), to check the files' MAC chain.
    #[arg(long)]
    tamper_token_url: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let verdict = cell::exports::verify::verify(
        &args.export,
        &args.public_key,
        &args.cell_data,
        args.proof.as_deref(),
        args.tamper_token_url.as_deref(),
    );
    match verdict {
        cell::exports::verify::Verdict::Verified(passed) => {
            for line in passed {
                println!("ok    {line}");
            }
            println!("VERIFIED");
            ExitCode::SUCCESS
        }
        cell::exports::verify::Verdict::Failed { problem, passed } => {
            for line in passed {
                println!("ok    {line}");
            }
            println!("FAIL  {problem}");
            println!("NOT VERIFIED: {problem}");
            ExitCode::FAILURE
        }
        cell::exports::verify::Verdict::CannotCheck(why) => {
            eprintln!("cannot check: {why}");
            ExitCode::from(2)
        }
    }
}
