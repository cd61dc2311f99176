//! A real `stoke serve` on 127.0.0.1 and a real HTTP client (ureq), for the tests that
//! serve: started on a free port, its stderr kept, killed when dropped.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `stoke serve` process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(artifact: &Path, flags: &[&str]) -> Server {
        let runtime_dir = std::env::temp_dir().join("stoke-test-xdg");
        fs::create_dir_all(&runtime_dir).unwrap();
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("stoke"))
            .current_dir(super::repo())
            .env("XDG_RUNTIME_DIR", runtime_dir)
            .arg("serve")
            .arg(artifact)
            .args(["--addr", "127.0.0.1:0", "--backend", "flex"])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (address, announced) = mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = stderr.clone();
        thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some((_, url)) = line.split_once(" on http://") {
                    let _ = address.send(format!("http://{url}"));
                }
                kept.lock().unwrap().push(line);
            }
        });
        let url = announced
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no address announced: {:?}", stderr.lock().unwrap()));
        Server { child, url, stderr }
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        answer(agent().get(&format!("{}{path}", self.url)).call())
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_bytes(path, "application/json", body.to_string().as_bytes())
    }

    pub fn post_bytes(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        answer(
            agent()
                .post(&format!("{}{path}", self.url))
                .header("content-type", content_type)
                .send(body),
        )
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: sends a signal to the child this struct owns and has not reaped.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) },
            0
        );
    }

    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "the server did not exit");
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that hands back 4xx and 5xx answers with their bodies instead of as errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

pub fn answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut response = result.unwrap_or_else(|err| panic!("request failed: {err}"));
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_string());
    let text = response.body_mut().read_to_string().unwrap();
    let mut body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if let (Some(retry), Value::Object(map)) = (retry_after, &mut body) {
        map.insert("retry-after".into(), retry.into());
    }
    (status, body)
}

/// The value of the sample `name{labels}` (labels written as in the page) in a /metrics page.
pub fn metric(page: &str, sample: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
