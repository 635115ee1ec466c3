//! `taskhost admin backup|restore`: a consistent copy of the embedded store
//! while a node serves it, and its restore into a new data folder (see
//! `taskhost_store::sqlite::backup`). A MongoDB store is backed up with
//! MongoDB's own tools (README, "Backup and restore").

use anyhow::bail;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use taskhost_store::sqlite::backup;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AdminCommand {
    /// Copy the embedded store to FILE (a new file), consistently, while a
    /// node serves it.
    Backup {
        /// Where the copy goes (it must not exist).
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Copy a backup into a data folder that has no store yet; a node
    /// started on the folder then serves it (migrating it if it is older).
    Restore {
        /// The backup to restore.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Which embedded store: `--store sqlite://PATH`, or the data folder's.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// Store URL (sqlite://PATH); default: the data folder's taskhost.db.
    #[arg(long, env = "TASKHOST_STORE", value_name = "URL")]
    store: Option<String>,
    /// The node's data folder.
    #[arg(
        long,
        env = "TASKHOST_DATA_DIR",
        value_name = "DIR",
        default_value = "./taskhost-data"
    )]
    data_dir: PathBuf,
}

impl StoreArgs {
    fn path(&self) -> anyhow::Result<PathBuf> {
        match &self.store {
            None => Ok(self.data_dir.join("taskhost.db")),
            Some(url) => match url.strip_prefix("sqlite://") {
                Some(path) => Ok(PathBuf::from(path)),
                None => bail!(
                    "{url} is not an embedded store: back up MongoDB with mongodump (or your replica set's snapshots), see README \"Backup and restore\""
                ),
            },
        }
    }
}

pub(crate) fn admin(command: AdminCommand) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let (what, copied, to) = match command {
        AdminCommand::Backup { file, store } => {
            let from = store.path()?;
            ("backed up", backup::backup(&from, &file)?, file)
        }
        AdminCommand::Restore { file, store } => {
            let to = store.path()?;
            if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_dir(dir)?;
            }
            ("restored", backup::restore(&file, &to)?, to)
        }
    };
    println!(
        "{what} {} pages ({} bytes) to {} in {:.1} s; integrity check: ok",
        copied.pages,
        copied.bytes,
        to.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("could not make the data folder {}: {e}", dir.display()))
}
