//! The doorman crate's integration tests, in one test binary: each module is
//! one file of tests, and linking the stack once instead of once a file
//! keeps the build short on two cores.

mod acme;
mod audit;
mod cli;
mod cli_agents;
mod cli_errors;
mod cli_servers;
mod cli_settings;
mod cli_story;
mod docs;
mod files;
mod finding;
mod join;
mod limits;
mod logs;
mod packaging;
mod passkeys;
mod recordings;
mod sealed;
mod settings;
mod terminal;
mod trust;
mod windows;
mod words;
