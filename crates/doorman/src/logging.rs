//! The log on standard error, as text or JSON lines: `DOORMAN_LOG` (or
//! `RUST_LOG`) filters it. In text every field is written with its hidden
//! characters spelled out, so nothing a peer sends (a target, a request id,
//! an error's text) can break a line or forge one; JSON escapes them itself.

use doorman_core::display::escape_hidden;
use std::io::IsTerminal;
use tracing_subscriber::field::MakeExt;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event, its span's fields before the message.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields` (with
    /// `message`), `target`, and `span`/`spans` carrying the request id,
    /// computer and operator of the connection it belongs to.
    Json,
}

/// Starts logging on standard error; `default` is the filter when
/// neither variable is set.
pub fn init(default: &str, format: LogFormat) {
    init_with(
        default,
        format,
        std::io::stderr,
        std::io::stderr().is_terminal(),
    );
}

/// Starts logging to `file` (a service has no standard error).
#[cfg(windows)]
pub fn init_file(default: &str, format: LogFormat, file: std::fs::File) {
    init_with(default, format, std::sync::Mutex::new(file), false);
}

fn init_with<W>(default: &str, format: LogFormat, writer: W, ansi: bool)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOORMAN_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => {
            let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
                let value = escape_hidden(&format!("{value:?}"));
                if field.name() == "message" {
                    write!(writer, "{value}")
                } else {
                    write!(writer, "{field}={value}")
                }
            })
            .delimited(" ");
            builder.fmt_fields(fields).with_ansi(ansi).init();
        }
    }
}
