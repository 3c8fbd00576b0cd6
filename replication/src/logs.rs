//! How every deployable logs: to stderr, filtered by `RUST_LOG` (else the process's default), and
//! coloured only for a person at a terminal. In a log file or a journal colour codes are noise,
//! and styling every span's fields cost about 1% of a request's CPU in the cell.

/// Installs the process's log subscriber. `default_filter` applies when `RUST_LOG` is unset.
pub fn init(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
