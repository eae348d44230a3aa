//! `riposte plugin new`: scaffolds a plugin.

/// Arguments of `riposte plugin new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's name.
    pub name: String,
}

/// Runs `riposte plugin new`.
pub fn run(args: NewArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet: {}", args.name)
}
