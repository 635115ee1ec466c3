//! `taskhost exec …`, and what a run may reach (`--allow-host`, `--notify`).

use super::*;

/// What a schedule's or run's plugin may call, whom to tell when it ends,
/// and its flow control.
#[derive(Debug, clap::Args)]
pub(crate) struct Reach {
    /// A host the plugin may call over HTTP (repeat for more):
    /// api.example.com, *.example.com:443, or * for any.
    #[arg(long = "allow-host", value_name = "PATTERN")]
    allow_hosts: Vec<String>,
    /// A webhook to call when a run ends (repeat for more).
    #[arg(long = "notify", value_name = "URL")]
    notify: Vec<String>,
    /// The ends the webhooks report, e.g. failed,dead,timed_out (default: every end).
    #[arg(long = "notify-on", value_name = "EVENTS", value_delimiter = ',')]
    notify_on: Vec<String>,
    #[command(flatten)]
    flow: Box<super::flow::FlowArgs>,
}

impl Reach {
    /// Sets `network`, `notify` and the flow control of a run policy.
    pub(super) fn apply(self, policy: &mut RunPolicy) {
        self.flow.apply(policy);
        if !self.allow_hosts.is_empty() {
            policy.network = Some(NetworkGrant {
                allow: self.allow_hosts,
            });
        }
        let on = self.notify_on;
        policy.notify = self
            .notify
            .into_iter()
            .map(|url| NotifyTarget {
                url,
                on: on.clone(),
            })
            .collect();
    }
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ExecCommand {
    /// Submit an ad hoc run of a plugin.
    Submit {
        plugin_id: String,
        /// The run's input, as JSON.
        #[arg(long)]
        input: Option<String>,
        /// -100 to 100; higher runs first.
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// Wait this long (e.g. 10s) for the result.
        #[arg(long, value_parser = taskhost_model::time::parse_duration)]
        wait: Option<std::time::Duration>,
        /// A secret the run may read (repeat for more).
        #[arg(long = "secret", value_name = "NAME")]
        secrets: Vec<String>,
        #[command(flatten)]
        reach: Reach,
    },
    /// Submit up to 1,000 runs at once, all or none: FILE ("-" for stdin)
    /// holds a JSON array of runs as `submit` sends them (`plugin_id`,
    /// `input`, `priority`, `limits`, `retry`…), or one such object per line.
    /// Prints the new executions' ids.
    SubmitBatch { file: PathBuf },
    /// List executions, newest first.
    List {
        #[arg(long)]
        schedule: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show one execution.
    Get { id: String },
    /// Print an execution's logs, stdout and stderr.
    Logs { id: String },
}

pub(crate) async fn exec(conn: Conn, command: ExecCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(conn.clone())?;
    let (headers, fields) = EXEC_COLUMNS;
    match command {
        ExecCommand::List {
            schedule,
            status,
            limit,
        } => {
            let mut query = vec![("limit".to_owned(), limit.to_string())];
            query.extend(schedule.map(|s| ("schedule_id".to_owned(), s)));
            query.extend(status.map(|s| ("status".to_owned(), s)));
            let request = client.http.get(client.url("/v1/executions")).query(&query);
            print(&conn, &client.send(request).await?, headers, fields)
        }
        ExecCommand::Submit {
            plugin_id,
            input,
            priority,
            wait,
            secrets,
            reach,
        } => {
            let input: Value = match input {
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("--input is not JSON: {e}"))?,
                None => Value::Null,
            };
            let mut policy = RunPolicy {
                input,
                priority,
                secrets,
                ..RunPolicy::default()
            };
            reach.apply(&mut policy);
            let body = NewExecution {
                plugin_id,
                wait,
                policy,
                other: NoOtherFields,
            };
            let made = client.post("/v1/executions", Some(serde_json::to_value(&body)?));
            print(&conn, &made.await?, headers, fields)
        }
        ExecCommand::SubmitBatch { file } => {
            let runs = read_runs(&file)?;
            let accepted = client
                .post("/v1/executions/batch", Some(json!({ "runs": runs })))
                .await?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&accepted)?);
            } else {
                for id in accepted["ids"].as_array().into_iter().flatten() {
                    println!("{}", text(id));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ExecCommand::Get { id } => print(
            &conn,
            &client.get(&format!("/v1/executions/{id}")).await?,
            headers,
            fields,
        ),
        ExecCommand::Logs { id } => {
            let execution = client.get(&format!("/v1/executions/{id}")).await?;
            logs(&conn, &execution["outcome"])
        }
    }
}

/// Prints an outcome's logs, stdout and stderr.
fn logs(conn: &Conn, outcome: &Value) -> anyhow::Result<ExitCode> {
    if conn.json {
        let logs = json!({"logs": outcome["logs"], "stdout": outcome["stdout"], "stderr": outcome["stderr"]});
        println!("{}", serde_json::to_string_pretty(&logs)?);
        return Ok(ExitCode::SUCCESS);
    }
    for line in outcome["logs"].as_array().into_iter().flatten() {
        println!(
            "{:>6}ms {:<5} {}",
            text(&line["at_ms"]),
            text(&line["level"]),
            text(&line["message"])
        );
    }
    for stream in ["stdout", "stderr"] {
        if let Some(captured) = outcome[stream].as_str().filter(|s| !s.is_empty()) {
            println!("--- {stream} ---\n{captured}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The runs of a batch file: a JSON array, or one JSON object per line.
fn read_runs(file: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("could not read {}: {e}", file.display()))?
    };
    if let Ok(Value::Array(runs)) = serde_json::from_str::<Value>(&text) {
        return Ok(runs);
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                anyhow::anyhow!(
                    "{} line {}: not a JSON run ({e}); give a JSON array or one object per line",
                    file.display(),
                    i + 1
                )
            })
        })
        .collect()
}
