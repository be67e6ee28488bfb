//! The Python tool against hostile code: every snippet becomes an observation describing the
//! refusal or the error, never a hang or an escape, and the host is untouched.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use scorch_agent::python::{PythonOptions, PythonTool};
use scorch_agent::tool::Tool;

const ESCAPE: &str = "BI = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'BuiltinImporter'][0]\nposix = BI.load_module('posix')\nsysm = BI.load_module('sys')\n";

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

fn hostile(host: &Host) -> Vec<(&'static str, String, &'static str)> {
    let c = host.canary();
    let o = host.outside();
    let p = host.port();
    vec![
        ("read a file outside", format!("print(open({c:?}).read())"), "refuses to read"),
        ("read /etc/passwd", "print(open('/etc/passwd').read())".into(), "refuses to read"),
        ("read /proc/self/environ", "print(open('/proc/self/environ').read())".into(), "refuses to read"),
        ("write a file outside", format!("open({o:?}, 'w').write('x')"), "refuses to write"),
        ("truncate the canary", format!("open({c:?}, 'w')"), "refuses to write"),
        ("append through a relative path", format!("import json\nopen('../../../..' + {o:?}, 'a').write('x')"), "refuses to write"),
        ("import os", "import os\nos.remove('x')".into(), "not allowed in the sandbox"),
        ("import subprocess", "import subprocess\nsubprocess.run(['true'])".into(), "not allowed in the sandbox"),
        ("import socket", "import socket".into(), "not allowed in the sandbox"),
        ("import ctypes", "import ctypes".into(), "not allowed in the sandbox"),
        ("__import__ of os", "__import__('os').system('true')".into(), "not allowed in the sandbox"),
        ("exec of an import", "exec('import shutil')".into(), "not allowed in the sandbox"),
        ("delete through posix", format!("{ESCAPE}posix.unlink({c:?})"), "refuses os.remove"),
        ("os.system through posix", format!("{ESCAPE}posix.system('touch ' + {o:?})"), "refuses os.system"),
        ("fork bomb", format!("{ESCAPE}while True:\n    posix.fork()"), "refuses os.fork"),
        ("kill the parent", format!("{ESCAPE}posix.kill(posix.getppid(), 9)"), "refuses os.kill"),
        ("socket to the host", format!("{ESCAPE}s = BI.load_module('_socket')\nx = s.socket()\nx.connect(('127.0.0.1', {p}))"), "refuses socket"),
        ("ctypes through importlib", format!("{ESCAPE}ct = sysm.modules['_frozen_importlib']._gcd_import('ctypes')\nct.CDLL(None)"), "refuses ctypes"),
        ("symlink out of the scratch folder", format!("{ESCAPE}posix.symlink('/etc', 'etc')\nprint(open('etc/passwd').read())"), "refuses os.symlink"),
        ("change the hook's data", format!("{ESCAPE}sysm.modules['__main__'].DENY_PREFIXES = ()\nsysm.modules['__main__'].READABLE = ('/',)\nprint(open({c:?}).read())"), "refuses to read"),
        ("patch realpath", format!("{ESCAPE}pp = sysm.modules['posixpath']\npp.realpath = lambda p, **k: '.'\nprint(open({c:?}).read())"), "refuses to read"),
        ("reach a frame", "try:\n    1/0\nexcept Exception as e:\n    e.__traceback__.tb_frame.f_back.f_globals['DENY_PREFIXES'] = ()".into(), "refuses access to tb_frame"),
        ("sys._getframe", format!("{ESCAPE}sysm._getframe(1)"), "refuses sys._getframe"),
        ("gc introspection", format!("{ESCAPE}gc = BI.load_module('gc')\ngc.get_objects()"), "refuses gc."),
        ("raise the memory limit", format!("{ESCAPE}r = BI.load_module('resource')\nr.setrlimit(r.RLIMIT_AS, (-1, -1))"), "refuses resource.setrlimit"),
        ("memory bomb", "x = 'a' * (10 ** 10)".into(), "MemoryError"),
        ("list memory bomb", "x = [0] * (10 ** 10)".into(), "MemoryError"),
        ("infinite loop", "while True:\n    pass".into(), "ran longer than"),
        ("huge output", "print('x' * 10 ** 7)".into(), "[output truncated]"),
        ("deep recursion", "def f(n):\n    return f(n + 1)\nf(0)".into(), "RecursionError"),
        ("exit", "raise SystemExit(3)".into(), "exiting is not allowed"),
        ("hard exit", format!("{ESCAPE}posix._exit(0)"), "interpreter exited"),
        ("environment secrets", format!("{ESCAPE}print(dict(posix.environ))"), "PATH"),
        ("list the host's folders", format!("{ESCAPE}print(posix.listdir('/root'))"), "refuses os.listdir"),
    ]
}

#[test]
fn hostile_snippets_become_observations_and_the_host_is_untouched() {
    let host = Host::new();
    let cases = hostile(&host);
    assert!(cases.len() >= 20);
    for (name, code, expect) in cases {
        let mut t = tool();
        let start = Instant::now();
        let out = t.execute(&code);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{name}: took {:?}",
            start.elapsed()
        );
        assert!(
            out.failed || name == "environment secrets" || name == "huge output",
            "{name}: not refused: {out:?}"
        );
        assert!(
            out.observation.contains(expect),
            "{name}: expected `{expect}` in {:?}",
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
        host.assert_untouched(name);
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
fn the_namespace_jail_is_used_where_permitted() {
    let t = tool();
    // CI runs as root, where `unshare` works: the jail must be on there.
    if std::env::var_os("CI").is_some() {
        assert!(
            t.jailed(),
            "unshare is available in CI; the jail must be used"
        );
    }
}
