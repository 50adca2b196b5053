//! The `quayhook` command line. With no subcommand it runs as a Lambda function (Lambda starts
//! `bootstrap` without arguments); the subcommands serve the same handler over plain HTTP and
//! help operators.
//!
//! I/O. Output goes to stdout, logs to stderr; errors are `anyhow` chains with context naming
//! what failed (which secret, which permission), never secret values.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lambda_http::lambda_runtime;

use std::time::Duration;

use aws_sdk_secretsmanager::error::DisplayErrorContext;

use crate::cluster::{KubeConnector, client_config};
use crate::config::{Config, SecretsConfig};
use crate::lambda;
use crate::queue::SqsQueue;
use crate::secrets::{ConfiguredSecrets, SecretSource, SecretsManager};
use crate::state::State;
use kargo_match::token::{SecretString, receiver_token, receiver_url, secret_from_random};

/// Kargo's Quay webhook receiver as an AWS Lambda.
#[derive(Debug, Parser)]
#[command(name = "quayhook", version, about)]
pub struct Cli {
    /// What to do; none runs the Lambda runtime.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the receiver over plain HTTP (same handler and configuration as the Lambda).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Log JSON lines instead of text.
        #[arg(long)]
        json_logs: bool,
    },
    /// Print receivers' webhook URLs, exactly as Kargo computes them for the same secret.
    Url {
        /// The receiver base URL (the API's invoke URL, or Kargo's external webhook base URL).
        #[arg(long)]
        base_url: String,
        /// Only these receiver secrets (ids or ARNs); default: every configured receiver.
        #[arg(long = "secret-id")]
        secret_ids: Vec<String>,
    },
    /// Verify secrets, kubeconfig, API server, permissions and subscriptions, with the
    /// function's configuration; prints what each receiver would refresh.
    Check,
    /// Create or store secrets.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Move dead-lettered deliveries back to the durable path's queue, with SQS's own message
    /// move task (StartMessageMoveTask from the dead-letter queue its RedrivePolicy names).
    Redrive(RedriveArgs),
}

/// `quayhook redrive`
#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    /// The durable path's queue; its RedrivePolicy names the dead-letter queue.
    #[arg(long, env = "QUAYHOOK_QUEUE_URL")]
    pub queue_url: String,
    /// Move at most this many messages per second (1 to 500); default: SQS's own rate.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=500))]
    pub max_per_second: Option<i32>,
    /// Resolve the queues and print the dead-letter queue's depth; move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only print the dead-letter queue's recent move tasks (ListMessageMoveTasks).
    #[arg(long, conflicts_with_all = ["dry_run", "max_per_second", "wait"])]
    pub status: bool,
    /// After starting the task, poll it every 5 s until it ends.
    #[arg(long)]
    pub wait: bool,
}

/// `quayhook secret …`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Generate a strong receiver secret (Kargo's recipe) and print or store its JSON.
    New {
        /// Kargo project (namespace); omit for a cluster-level receiver.
        #[arg(long, default_value = "")]
        project: String,
        /// Receiver name.
        #[arg(long)]
        receiver: String,
        /// Store it in this Secrets Manager secret (created if missing). When the secret
        /// already holds this receiver, its current secret becomes `previousSecret`, so the
        /// URL in Quay keeps working until updated.
        #[arg(long)]
        store: Option<String>,
        /// With --store: do not keep the current secret as `previousSecret`.
        #[arg(long)]
        no_previous: bool,
        /// With --store: also print the JSON (secret material) to stdout.
        #[arg(long)]
        print: bool,
    },
    /// Store standard input in a Secrets Manager secret (created if missing); with
    /// --kubeconfig the input is first checked to be a usable kubeconfig.
    Put {
        /// The secret's id or name.
        #[arg(long)]
        secret_id: String,
        /// Validate the input as a kubeconfig quayhook can use.
        #[arg(long)]
        kubeconfig: bool,
    },
}

/// Builds the shared state from the environment's configuration, with an SQS client for the
/// durable path when `QUAYHOOK_QUEUE_URL` is set (and none otherwise).
///
/// # Errors
/// When the configuration is invalid.
pub async fn build_state() -> anyhow::Result<State<ConfiguredSecrets, KubeConnector>> {
    let config = Config::from_env().context("invalid configuration")?;
    // One SDK configuration, loaded once, for every AWS client (Secrets Manager, EKS, SQS);
    // none when nothing uses AWS (local files and no queue).
    let local = matches!(config.secrets, SecretsConfig::Files { .. }) && config.queue.is_none();
    let sdk = if local {
        None
    } else {
        Some(crate::secrets::sdk_config().await)
    };
    let secrets = match &sdk {
        Some(sdk) => ConfiguredSecrets::with_sdk(&config.secrets, sdk),
        None => ConfiguredSecrets::from_config(&config.secrets).await,
    };
    let queue = config
        .queue
        .as_ref()
        .zip(sdk.as_ref())
        .map(|(queue, sdk)| SqsQueue::with_sdk(sdk, queue.url.clone()));
    let connector = KubeConnector::from_config(&config);
    let state = State::new(config, secrets, connector);
    Ok(match queue {
        Some(queue) => state.with_queue(queue),
        None => state,
    })
}

/// Runs the parsed command line.
///
/// # Errors
/// What failed, with context.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        // Boxed: the delivery future is deep, and one allocation per process keeps the type
        // of `main`'s future within the compiler's layout depth limit.
        None => Box::pin(run_lambda()).await,
        Some(Command::Serve { listen, .. }) => Box::pin(run_serve(listen)).await,
        Some(Command::Url {
            base_url,
            secret_ids,
        }) => run_url(&base_url, secret_ids).await,
        Some(Command::Check) => {
            let config = Config::from_env().context("invalid configuration")?;
            let secrets = ConfiguredSecrets::from_config(&config.secrets).await;
            crate::check::run(&config, &secrets).await
        }
        Some(Command::Secret(cmd)) => run_secret(cmd).await,
        Some(Command::Redrive(args)) => run_redrive(args).await,
    }
}

/// The Lambda runtime: one function per `_HANDLER` (`http`, the webhook, or `worker`, the
/// queue worker), both answered by [`lambda::invoke`].
async fn run_lambda() -> anyhow::Result<()> {
    let state = build_state().await?;
    tracing::info!(handler = ?state.config.lambda_handler, queue = state.queue().is_some(), "starting");
    if state.config.prefetch {
        state.prefetch().await;
    }
    let state = &state;
    lambda_runtime::run(lambda_runtime::service_fn(move |event| async move {
        // Only an ECR event that failed for a transient reason, with no queue to take it,
        // becomes a function error, so Lambda's asynchronous retries apply.
        lambda::invoke(state, event).await.into_result()
    }))
    .await
    .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}

async fn run_serve(listen: SocketAddr) -> anyhow::Result<()> {
    let state = Arc::new(build_state().await?);
    if state.config.prefetch {
        state.prefetch().await;
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, base_path = %state.config.base_path, "serving");
    crate::serve::serve(state, listener, shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run_url(base_url: &str, secret_ids: Vec<String>) -> anyhow::Result<()> {
    let fetched = if secret_ids.is_empty() {
        let config = Config::from_env().context("invalid configuration")?;
        ConfiguredSecrets::from_config(&config.secrets)
            .await
            .receivers()
            .await
    } else {
        SecretsManager::new(sm_client().await, secret_ids, None, String::new())
            .receivers()
            .await
    }
    .context("cannot read receiver secrets")?;
    for problem in &fetched.problems {
        eprintln!("skipped: {problem}");
    }
    if fetched.receivers.is_empty() {
        anyhow::bail!("no usable receiver secret found");
    }
    for r in &fetched.receivers {
        let token = receiver_token(&r.project, &r.receiver, &r.secret);
        let url = receiver_url(base_url, &token).context("invalid --base-url")?;
        let scope = if r.project.is_empty() {
            "(cluster)"
        } else {
            r.project.as_str()
        };
        println!("{scope}\t{}\t{url}", r.receiver);
    }
    Ok(())
}

async fn sm_client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&crate::secrets::sdk_config().await)
}

/// Creates the secret or, when it exists, writes a new version.
async fn store_secret(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
    value: &str,
) -> anyhow::Result<&'static str> {
    let exists = client.describe_secret().secret_id(id).send().await.is_ok();
    if exists {
        client
            .put_secret_value()
            .secret_id(id)
            .secret_string(value)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
            .with_context(|| format!("cannot update secret {id}"))?;
        Ok("updated")
    } else {
        client
            .create_secret()
            .name(id)
            .secret_string(value)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
            .with_context(|| format!("cannot create secret {id}"))?;
        Ok("created")
    }
}

fn generate_secret() -> anyhow::Result<SecretString> {
    // 48 random bytes give 64 base64 characters; fewer than 32 survive removing `+` and `/`
    // only with negligible probability, so retry rather than weaken the secret.
    for _ in 0..8 {
        let mut random = [0u8; 48];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        if let Some(secret) = secret_from_random(&random) {
            return Ok(secret);
        }
    }
    anyhow::bail!("could not generate a secret")
}

async fn run_secret(cmd: SecretCommand) -> anyhow::Result<()> {
    match cmd {
        SecretCommand::New {
            project,
            receiver,
            store,
            no_previous,
            print,
        } => {
            let secret = generate_secret()?;
            let mut json = serde_json::json!({
                "project": project,
                "receiver": receiver,
                "secret": secret.expose(),
            });
            let Some(id) = store else {
                println!("{json}");
                return Ok(());
            };
            let client = sm_client().await;
            if !no_previous
                && let Ok(current) = client.get_secret_value().secret_id(&id).send().await
                && let Some(text) = current.secret_string()
                && let Ok(old) = crate::secrets::parse_receiver(&id, text)
                && old.project == project
                && old.receiver == receiver
            {
                json["previousSecret"] = serde_json::json!(old.secret.expose());
                eprintln!(
                    "the current secret of {id} stays accepted as previousSecret until the next rotation"
                );
            }
            let action = store_secret(&client, &id, &json.to_string()).await?;
            eprintln!(
                "{action} secret {id}; print the new URL with: quayhook url --base-url <API base URL> --secret-id {id}"
            );
            if print {
                println!("{json}");
            }
            Ok(())
        }
        SecretCommand::Put {
            secret_id,
            kubeconfig,
        } => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read standard input")?;
            if text.trim().is_empty() {
                anyhow::bail!("standard input is empty");
            }
            if kubeconfig {
                let secret = SecretString::new(text.clone());
                client_config(&secret, Duration::from_secs(2), Duration::from_secs(5))
                    .await
                    .context("standard input is not a kubeconfig quayhook can use")?;
            }
            let action = store_secret(&sm_client().await, &secret_id, &text).await?;
            eprintln!("{action} secret {secret_id}");
            Ok(())
        }
    }
}

/// `quayhook redrive`: SQS moves the messages itself (StartMessageMoveTask); this resolves the
/// queues, starts the task and reports it.
async fn run_redrive(args: RedriveArgs) -> anyhow::Result<()> {
    let url = args.queue_url.trim();
    if url.is_empty() {
        anyhow::bail!(
            "no queue: set QUAYHOOK_QUEUE_URL or --queue-url (the stack output QueueUrl)"
        );
    }
    let client = crate::check::sqs_client().await;
    let queue = crate::check::queue_status(&client, url).await?;
    let Some(dlq) = queue.dead_letter else {
        anyhow::bail!(
            "queue {url} has no RedrivePolicy, so no dead-letter queue to move messages from"
        );
    };
    let depth = crate::check::depth(&client, &dlq.url).await?;
    println!("queue:             {url}");
    println!("                   {}", queue.arn);
    println!("dead-letter queue: {}", dlq.url);
    println!("                   {}", dlq.arn);
    println!("                   {depth}");
    if args.status {
        return print_move_tasks(&client, &dlq.arn).await.map(|_| ());
    }
    if args.dry_run {
        println!(
            "dry run: StartMessageMoveTask would move the dead-letter queue's messages to the queue"
        );
        return Ok(());
    }
    if depth.total() == 0 {
        println!("the dead-letter queue is empty: nothing to move");
        return Ok(());
    }
    let mut start = client
        .start_message_move_task()
        .source_arn(&dlq.arn)
        .destination_arn(&queue.arn);
    if let Some(rate) = args.max_per_second {
        start = start.max_number_of_messages_per_second(rate);
    }
    let started = start
        .send()
        .await
        .map_err(crate::check::sqs_error)
        .context("StartMessageMoveTask failed (it needs sqs:StartMessageMoveTask, sqs:ReceiveMessage, sqs:DeleteMessage and sqs:GetQueueAttributes on the dead-letter queue and sqs:SendMessage on the queue; a queue runs one move task at a time)")?;
    println!(
        "started message move task {}",
        started.task_handle().unwrap_or("(no handle returned)")
    );
    let mut status = print_move_tasks(&client, &dlq.arn).await?;
    if !args.wait {
        println!("follow it with: quayhook redrive --status");
        return Ok(());
    }
    while matches!(status.as_deref(), Some("RUNNING" | "CANCELLING")) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        status = print_move_tasks(&client, &dlq.arn).await?;
    }
    match status.as_deref() {
        Some("COMPLETED") => Ok(()),
        other => anyhow::bail!(
            "the move task ended {}",
            other.unwrap_or("without a status")
        ),
    }
}

/// Prints the most recent move task from `source_arn` (ListMessageMoveTasks lists the newest
/// first) and returns its status: RUNNING, COMPLETED, CANCELLING, CANCELLED or FAILED.
async fn print_move_tasks(
    client: &aws_sdk_sqs::Client,
    source_arn: &str,
) -> anyhow::Result<Option<String>> {
    let listed = client
        .list_message_move_tasks()
        .source_arn(source_arn)
        .max_results(1)
        .send()
        .await
        .map_err(crate::check::sqs_error)
        .context("ListMessageMoveTasks failed (it needs sqs:ListMessageMoveTasks on the dead-letter queue)")?;
    let Some(task) = listed.results().first() else {
        println!("no message move task from the dead-letter queue yet");
        return Ok(None);
    };
    let started = std::time::UNIX_EPOCH
        + Duration::from_millis(u64::try_from(task.started_timestamp()).unwrap_or(0));
    let to_move = task
        .approximate_number_of_messages_to_move()
        .map_or("?".to_owned(), |n| n.to_string());
    let status = task.status().unwrap_or("UNKNOWN");
    let failure = task
        .failure_reason()
        .map_or(String::new(), |r| format!(" ({r})"));
    println!(
        "move task started {}Z: {status}{failure}, {} of {to_move} message(s) moved",
        &kargo_match::warehouse::refresh_value(started)[..19],
        task.approximate_number_of_messages_moved()
    );
    Ok(task.status().map(str::to_owned))
}
