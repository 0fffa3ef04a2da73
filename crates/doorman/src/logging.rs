//! The log on standard error: `DOORMAN_LOG` filters it, and every field is
//! written with its hidden characters spelled out, so nothing a peer sends
//! (a target, a request id, an error's text) can break a line or forge one.

use doorman_core::display::escape_hidden;
use std::io::IsTerminal;
use tracing_subscriber::field::MakeExt;

pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOORMAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let value = escape_hidden(&format!("{value:?}"));
        if field.name() == "message" {
            write!(writer, "{value}")
        } else {
            write!(writer, "{field}={value}")
        }
    })
    .delimited(" ");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(fields)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
