//! `taskhost plugin …` and `taskhost node …`.

use super::*;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum PluginCommand {
    /// Upload a plugin version.
    // Its --version is the plugin's, not taskhost's.
    #[command(disable_version_flag = true)]
    Push {
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// The version, e.g. 1.2.0.
        #[arg(long = "version", id = "plugin_version", value_name = "VERSION")]
        version: String,
    },
    /// List plugins.
    List,
    /// Point an alias (e.g. stable) at a version: schedules following
    /// NAME@ALIAS run it from their next fire.
    Alias {
        /// The plugin's name.
        name: String,
        /// The alias, e.g. stable (not latest: that is always the newest).
        alias: String,
        /// The version it should point to.
        #[arg(id = "plugin_version", value_name = "VERSION")]
        version: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum NodeCommand {
    /// List the live nodes (admin scope).
    List,
    /// Drain a node: it claims nothing more and finishes its runs (admin scope).
    Drain { id: String },
}

pub(crate) async fn node(conn: Conn, command: NodeCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(conn.clone())?;
    let (headers, fields) = NODE_COLUMNS;
    let answer = match command {
        NodeCommand::List => {
            let nodes = client.get("/v1/nodes").await?;
            json!({ "items": nodes })
        }
        NodeCommand::Drain { id } => client.post(&format!("/v1/nodes/{id}/drain"), None).await?,
    };
    if conn.json {
        let value = answer.get("items").cloned().unwrap_or(answer);
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    print(&conn, &answer, headers, fields)
}

pub(crate) async fn plugin(conn: Conn, command: PluginCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(conn.clone())?;
    let (headers, fields) = PLUGIN_COLUMNS;
    match command {
        PluginCommand::Push {
            file,
            name,
            version,
        } => {
            let wasm = std::fs::read(&file)
                .with_context(|| format!("could not read {}", file.display()))?;
            let url = client.url("/v1/plugins");
            let request = client
                .http
                .post(url)
                .query(&[("name", name), ("version", version)])
                .body(wasm);
            print(&conn, &client.send(request).await?, headers, fields)
        }
        PluginCommand::List => print(&conn, &client.get("/v1/plugins").await?, headers, fields),
        PluginCommand::Alias {
            name,
            alias,
            version,
        } => {
            let path = format!("/v1/plugins/{name}/aliases/{alias}");
            let moved = client
                .post(&path, Some(json!({"version": version})))
                .await?;
            let (headers, fields) = ALIAS_COLUMNS;
            print(&conn, &moved, headers, fields)
        }
    }
}
