//! The server under test: spawned (temp data dir, loopback, a free port) or attached to.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub addr: SocketAddr,
    pub pid: u32,
    pub spawned: bool,
    pub bin: Option<PathBuf>,
    pub log: Option<PathBuf>,
    child: Option<Child>,
    dir: Option<PathBuf>,
    keep_data: bool,
}

pub struct SpawnOptions {
    pub bin: PathBuf,
    pub vcodec: &'static str,
    pub max_sessions: usize,
    pub keep_data: bool,
    pub extra_args: Vec<String>,
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `GET /healthz` answers 200.
async fn healthy(addr: SocketAddr) -> bool {
    crate::signal::http(addr, "GET", "/healthz", None, "", Duration::from_secs(2))
        .await
        .is_ok_and(|r| r.status == 200)
}

impl Server {
    pub async fn spawn(opts: SpawnOptions) -> Result<Server, String> {
        if !opts.bin.is_file() {
            return Err(format!(
                "server binary {} not found: build it with `cargo build --release --bin pion-the-sky` or pass --server-bin / --server",
                opts.bin.display()
            ));
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("loadgen-{}-{stamp}", std::process::id()));
        let data = dir.join("recordings");
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let port = free_port().map_err(|e| e.to_string())?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new(&opts.bin);
        cmd.arg(format!("--port={port}"))
            .arg("--bind=127.0.0.1")
            .arg("--ice-ip=127.0.0.1")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--vcodec={}", opts.vcodec))
            .arg(format!("--max-sessions={}", opts.max_sessions))
            // Every load client comes from 127.0.0.1: the per-address limits would cap the
            // load at a few dozen sessions, so a spawned server has none.
            .arg("--max-sockets-per-ip=0")
            .arg("--max-sessions-per-ip=0")
            .args(&opts.extra_args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file);
        let child = cmd
            .spawn()
            .map_err(|e| format!("{}: {e}", opts.bin.display()))?;
        let mut server = Server {
            addr,
            pid: child.id(),
            spawned: true,
            bin: Some(opts.bin),
            log: Some(log),
            child: Some(child),
            dir: Some(dir),
            keep_data: opts.keep_data,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = server.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "the server exited at startup ({status}); see {}",
                    server
                        .log
                        .as_ref()
                        .map(|l| l.display().to_string())
                        .unwrap_or_default()
                ));
            }
            if healthy(addr).await {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.stop().await;
        Err("the server did not answer /healthz within 20 s".into())
    }

    pub async fn attach(addr: SocketAddr, pid: u32) -> Result<Server, String> {
        if !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() {
            return Err(format!("no process {pid}"));
        }
        if !healthy(addr).await {
            return Err(format!("http://{addr}/healthz does not answer 200"));
        }
        Ok(Server {
            addr,
            pid,
            spawned: false,
            bin: None,
            log: None,
            child: None,
            dir: None,
            keep_data: true,
        })
    }

    pub fn data_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("recordings"))
    }

    /// A spawned server gets SIGTERM (it finalizes and exits), then SIGKILL after 15 s; its
    /// temp directory is removed unless `--keep-data`. An attached server is left alone.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !self.keep_data
            && let Some(dir) = self.dir.take()
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
