//! A local Kubernetes API server for the demo and for trying quayhook by hand.
//!
//! Runs the local API server of the test kit (`crates/testkit/src/apiserver.rs`) as a process: HTTPS on
//! loopback with a generated CA, objects loaded from seed files, an admin kubeconfig written
//! out, one line per request on stderr (method, path, status, user; never a header), until
//! SIGINT or SIGTERM.
//!
//! ```text
//! cargo run --example kube-apiserver -- --listen 127.0.0.1:0 --seed seed.json \
//!     --kubeconfig .run/kubeconfig --ready-file .run/apiserver.url [--latency-ms 20]
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use quayhook_testkit::apiserver::ApiServer;

const USAGE: &str = "usage: kube-apiserver [--listen ADDR] [--seed FILE]... [--kubeconfig PATH] \
[--namespace NS] [--ready-file PATH] [--latency-ms N]

  --listen ADDR       address to bind (default 127.0.0.1:0, a free port)
  --seed FILE         JSON array of Kubernetes objects to load (repeatable); a List's items or a
                      single object also work; a missing namespace is created
  --kubeconfig PATH   write an admin kubeconfig here (mode 0600)
  --namespace NS      default namespace of the kubeconfig's context
  --ready-file PATH   once serving, write the server URL here (atomically)
  --latency-ms N      delay every request by N milliseconds";

/// Parsed command line.
#[derive(Debug)]
struct Args {
    listen: SocketAddr,
    seeds: Vec<PathBuf>,
    kubeconfig: Option<PathBuf>,
    namespace: Option<String>,
    ready_file: Option<PathBuf>,
    latency: Duration,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        seeds: Vec::new(),
        kubeconfig: None,
        namespace: None,
        ready_file: None,
        latency: Duration::ZERO,
    };
    while let Some(flag) = argv.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (flag, None),
        };
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = inline
            .or_else(|| argv.next())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => {
                args.listen = value
                    .parse()
                    .map_err(|e| format!("--listen {value:?}: {e}"))?;
            }
            "--seed" => args.seeds.push(value.into()),
            "--kubeconfig" => args.kubeconfig = Some(value.into()),
            "--namespace" => args.namespace = Some(value),
            "--ready-file" => args.ready_file = Some(value.into()),
            "--latency-ms" => {
                let ms = value
                    .parse()
                    .map_err(|e| format!("--latency-ms {value:?}: {e}"))?;
                args.latency = Duration::from_millis(ms);
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

/// Loads one seed file into the store.
fn load_seed(server: &ApiServer, path: &Path) -> Result<usize, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("seed {}: {e}", path.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("seed {}: {e}", path.display()))?;
    let objects = match doc {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Object(ref m) if m.get("items").is_some_and(|i| i.is_array()) => {
            doc["items"].as_array().cloned().unwrap_or_default()
        }
        obj @ serde_json::Value::Object(_) => vec![obj],
        _ => {
            return Err(format!(
                "seed {}: expected a JSON array of objects",
                path.display()
            ));
        }
    };
    let count = objects.len();
    for obj in objects {
        server
            .try_apply(obj)
            .map_err(|e| format!("seed {}: {e}", path.display()))?;
    }
    Ok(count)
}

/// Writes `contents` to `path` through a temporary file and a rename, so a reader polling for
/// the file never sees it half-written.
fn write_atomically(path: &Path, contents: &str, private: bool) -> Result<(), String> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let result = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(contents.as_bytes()).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("write {}: {e}", path.display())
    })
}

async fn shutdown_signal() -> Result<&'static str, String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| format!("listen for SIGTERM: {e}"))?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT").map_err(|e| format!("listen for SIGINT: {e}")),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .map(|()| "interrupt")
            .map_err(|e| format!("listen for interrupt: {e}"))
    }
}

async fn run(args: Args) -> Result<(), String> {
    let server = ApiServer::start_on(args.listen)
        .await
        .map_err(|e| format!("bind {}: {e}", args.listen))?;
    server.on_request(|r| {
        let query = if r.query.is_empty() {
            String::new()
        } else {
            format!("?{}", r.query)
        };
        let user = if r.user.is_empty() { "-" } else { &r.user };
        eprintln!("{} {}{query} {} user={user}", r.method, r.path, r.status);
    });
    for seed in &args.seeds {
        let n = load_seed(&server, seed)?;
        eprintln!("kube-apiserver: loaded {n} objects from {}", seed.display());
    }
    server.set_latency(args.latency);
    if let Some(path) = &args.kubeconfig {
        let kubeconfig = server.kubeconfig_yaml(server.admin_token(), args.namespace.as_deref());
        write_atomically(path, &kubeconfig, true)?;
    }
    if let Some(path) = &args.ready_file {
        write_atomically(path, &format!("{}\n", server.url()), false)?;
    }
    eprintln!("kube-apiserver: serving on {}", server.url());
    let signal = shutdown_signal().await?;
    eprintln!("kube-apiserver: {signal}, shutting down");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kube-apiserver: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-apiserver: {e}");
            ExitCode::FAILURE
        }
    }
}
