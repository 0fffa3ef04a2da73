//! `doorman server`: the settings file and the command line made into one
//! configuration, the port bound, and the server run (as a replica, when
//! others share its database).

use crate::cli;
use anyhow::{Context, Result};

pub async fn server(args: cli::ServerArgs) -> Result<()> {
    use doorman_server::config::{self, ServerSettings};
    let file = match &args.config {
        Some(path) => ServerSettings::read(path)?,
        None => ServerSettings::default(),
    };
    let settings = args.settings().over(file);
    let listen = settings.listen();
    // Bound now (a taken port is reported at once; with port 0 the links
    // must name the port bound), listening only once this server is active.
    let socket =
        config::bind_socket(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let bound = socket.local_addr()?;
    let prepared = doorman_server::Prepared::new(settings.into_config(bound)?)?;
    config::run_replica(prepared, socket, crate::shutdown_signal()).await?;
    Ok(())
}
