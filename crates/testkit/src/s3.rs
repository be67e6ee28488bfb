//! A real S3-compatible server for tests: moto's server on 127.0.0.1, or the one named by
//! `SCORCH_TEST_S3_ENDPOINT`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment that points the AWS client at `endpoint`.
pub fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT", endpoint.to_owned()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ]
}

/// A running server (stopped when dropped, if this process started it).
#[derive(Debug)]
pub struct Server {
    /// Its base URL.
    pub endpoint: String,
    child: Option<Child>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Start moto's server on a free port (or use `SCORCH_TEST_S3_ENDPOINT`) and wait for it.
pub fn start_server() -> Server {
    if let Ok(endpoint) = std::env::var("SCORCH_TEST_S3_ENDPOINT") {
        return Server {
            endpoint,
            child: None,
        };
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "python3 -m moto.server: install it with `pip install 'moto[server]'` (.ci/run does)",
        );
    let server = Server {
        endpoint: format!("http://127.0.0.1:{port}"),
        child: Some(child),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto server did not start; is `moto[server]` installed?"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// Create `bucket` on the server at `endpoint`.
pub fn create_bucket(endpoint: &str, bucket: &str) {
    let code = format!(
        "import urllib.request as u; u.urlopen(u.Request('{endpoint}/{bucket}', method='PUT')).read()"
    );
    let out = Command::new("python3")
        .args(["-c", &code])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "creating bucket: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
