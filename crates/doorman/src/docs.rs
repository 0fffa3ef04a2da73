//! The documentation generated from the command line's own definitions, so
//! that it never drifts from `--help`: shell completion scripts and manual
//! pages (roff).

use crate::cli::Cli;
use anyhow::{Result, bail};
use clap::CommandFactory;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "doorman", &mut std::io::stdout());
}

/// Prints the manual page of `doorman`, or of the command `path` names
/// (`["admin", "operator"]`), as roff.
pub fn man(path: &[String]) -> Result<()> {
    let mut command = Cli::command();
    command.build();
    let mut name = String::from("doorman");
    for word in path {
        let Some(sub) = command.find_subcommand(word).cloned() else {
            bail!("no command {name} {word}: see `{name} --help`");
        };
        name = format!("{name}-{word}");
        command = sub
            .display_name(name.clone())
            .bin_name(name.replace('-', " "))
            .version(env!("CARGO_PKG_VERSION"));
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(command).render(&mut page)?;
    use std::io::Write;
    std::io::stdout().write_all(&page)?;
    Ok(())
}
