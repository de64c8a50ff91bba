//! `ctl completions` and `ctl man`: shell completions and man pages, generated from the
//! same clap definition that parses the command line, so they cannot drift from it.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::Exit;
use crate::cli::{Cli, CompletionsArgs, ManArgs};

/// Prints the completion script for one shell.
pub fn completions(args: &CompletionsArgs) -> Result<Exit> {
    let mut command = Cli::command();
    // Made in memory first: clap_complete panics when its writer fails, and a closed
    // pipe (`ctl completions bash | head`) is no reason to.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "ctl", &mut script);
    crate::output::print_stdout(&String::from_utf8_lossy(&script));
    Ok(Exit::Success)
}

/// Writes `ctl.1` and a page per subcommand into the folder, and names each file written.
///
/// # Errors
/// The folder cannot be made or a page cannot be written.
pub fn man(args: &ManArgs) -> Result<Exit> {
    let dir: &Path = &args.dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot make the folder {}", dir.display()))?;
    let command = Cli::command();
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    let mut written: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("ctl") && name.ends_with(".1"))
        .collect();
    written.sort();
    let listing: String = written
        .iter()
        .map(|name| format!("{}\n", dir.join(name).display()))
        .collect();
    crate::output::print_stdout(&listing);
    Ok(Exit::Success)
}
