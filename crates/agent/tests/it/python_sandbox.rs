//! The Python tool against hostile code: every snippet becomes an observation describing the
//! refusal or the error, never a hang or an escape, and the host is untouched.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use scorch_agent::python::{PythonOptions, PythonTool, Sandbox};
use scorch_agent::tool::Tool;

fn tool() -> PythonTool {
    PythonTool::new(PythonOptions {
        timeout: Duration::from_secs(3),
        memory_bytes: 1 << 30,
        ..Default::default()
    })
    .unwrap()
}

struct Host {
    dir: tempfile::TempDir,
    listener: TcpListener,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("canary.txt"), "host secret 8c1f").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Self { dir, listener }
    }
    fn canary(&self) -> String {
        self.dir.path().join("canary.txt").display().to_string()
    }
    fn outside(&self) -> String {
        self.dir.path().join("escaped.txt").display().to_string()
    }
    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }
    /// Nothing changed on the host side.
    fn assert_untouched(&self, case: &str) {
        assert_eq!(
            std::fs::read_to_string(self.canary()).unwrap(),
            "host secret 8c1f",
            "{case}: canary changed"
        );
        assert!(
            !std::path::Path::new(&self.outside()).exists(),
            "{case}: a file appeared outside the scratch folder"
        );
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["canary.txt"], "{case}");
        if let Ok((mut s, _)) = self.listener.accept() {
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            panic!("{case}: the sandbox reached the host over the network");
        }
    }
}

/// One snippet of the corpus in the repository's `tests/hostile/`: a `# title` line, `# expect: TEXT` (in
/// the observation), optionally `# refused: no`, then the code with placeholders.
struct Snippet {
    name: String,
    title: String,
    expect: String,
    refused: bool,
    code: String,
}

/// A shared piece of the corpus (`tests/hostile/prelude/NAME.py`), spliced in for `{NAME}`.
fn prelude(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../tests/hostile/prelude/{name}.py")),
    )
    .unwrap()
}

/// The corpus, its placeholders filled in for `host`.
fn corpus(host: &Host) -> Vec<Snippet> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/hostile");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let header = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                    .map(str::to_owned)
            };
            let code = text
                .replace("{escape}", &prelude("escape"))
                .replace("{fork_exec}", &prelude("fork_exec"))
                .replace("{canary}", &host.canary())
                .replace("{outside}", &host.outside())
                .replace("{port}", &host.port().to_string())
                .replace("{parent}", &std::process::id().to_string());
            Snippet {
                name: p.file_stem().unwrap().to_string_lossy().into_owned(),
                title: text
                    .lines()
                    .next()
                    .unwrap()
                    .trim_start_matches("# ")
                    .to_owned(),
                expect: header("expect").expect("a `# expect:` line"),
                refused: header("refused").as_deref() != Some("no"),
                code,
            }
        })
        .collect()
}

#[test]
fn hostile_snippets_become_observations_and_the_host_is_untouched() {
    let host = Host::new();
    let cases = corpus(&host);
    assert!(cases.len() >= 40, "the corpus is in tests/hostile");
    for s in cases {
        let name = format!("{} ({})", s.name, s.title);
        let mut t = tool();
        let start = Instant::now();
        let out = t.execute(&s.code);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{name}: took {:?}",
            start.elapsed()
        );
        assert!(!s.refused || out.failed, "{name}: not refused: {out:?}");
        assert!(
            out.observation.contains(&s.expect),
            "{name}: expected `{}` in {:?}",
            s.expect,
            out.observation
        );
        assert!(
            !out.observation.contains("host secret"),
            "{name}: leaked the canary"
        );
        assert!(
            !out.observation.contains(env!("CARGO_MANIFEST_DIR")),
            "{name}: leaked the host environment"
        );
        host.assert_untouched(&name);
        // The interpreter still answers (restarted if the snippet killed it).
        let after = t.execute("print(6 * 7)");
        assert_eq!(
            after.observation.trim(),
            "42",
            "{name}: the tool is unusable afterwards: {after:?}"
        );
    }
}

#[test]
fn state_lasts_across_steps_and_survives_a_restart() {
    let mut t = tool();
    assert_eq!(t.execute("x = 20\ny = [1, 2]").observation, "");
    assert_eq!(
        t.execute("y.append(x + 1)\nprint(sum(y))")
            .observation
            .trim(),
        "24"
    );
    let out = t.execute("while True:\n    pass");
    assert!(out.failed && out.observation.contains("ran longer than"));
    // A fresh process replays the earlier steps: x and y are back.
    assert_eq!(t.execute("print(x, y)").observation.trim(), "20 [1, 2, 21]");
    let fin = t.execute("final_answer(x * 2)");
    assert_eq!(fin.final_answer.as_deref(), Some("40"));
    std::fs::write(t.scratch().join("data.txt"), "7").unwrap();
    assert_eq!(
        t.execute("print(int(open('data.txt').read()) + 1)")
            .observation
            .trim(),
        "8",
        "the scratch folder is usable"
    );
    assert_eq!(
        t.execute("open('out.txt', 'w').write('hi')").observation,
        ""
    );
    assert_eq!(
        std::fs::read_to_string(t.scratch().join("out.txt")).unwrap(),
        "hi"
    );
}

#[test]
fn the_boundary_is_required_and_used() {
    let t = tool();
    assert!(t.sandboxed(), "the default tool runs inside the boundary");
    // Fails closed: an interpreter the boundary cannot start is refused, not run unconfined.
    let err = PythonTool::new(PythonOptions {
        python: "/nonexistent/python3".into(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.0.contains("sandbox cannot be set up"), "{err}");
    assert!(err.0.contains("sandbox: none"), "{err}");
    // Only an explicit `Sandbox::None` runs without it.
    let open = PythonTool::new(PythonOptions {
        sandbox: Sandbox::None,
        ..Default::default()
    })
    .unwrap();
    assert!(!open.sandboxed());
}
