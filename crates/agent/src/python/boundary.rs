//! The boundary around the python tool's interpreter: bubblewrap (`bwrap`, Debian's
//! `bubblewrap`) with a seccomp filter built by `seccompiler`.
//!
//! Inside, the interpreter runs
//! - in new user, PID, mount, network, IPC, UTS and cgroup namespaces: it sees only its own
//!   processes (no host `/proc/<pid>`, so no `environ`, no `nsenter`, no pidfd of a host
//!   process), has no network but its own loopback, and holds no capability;
//! - on a root made of the system's `/usr` (and `/lib*`, `/bin`, `/sbin`) and the Python
//!   installation, all read-only, a private `/tmp`, a minimal `/dev`, and the trajectory's
//!   scratch folder as the only writable host path;
//! - with an empty environment but for `PATH`, `HOME` and the thread counts;
//! - under a seccomp filter that refuses (EPERM) mounting, namespace changes (`setns`,
//!   `unshare`), `ptrace` and cross-process memory access, pidfds, process creation (any
//!   `clone` that does not make a thread, `fork`, `vfork`), sockets other than Unix ones,
//!   kernel modules, BPF, `perf_event_open`, `userfaultfd`, io_uring and key management; and
//!   that answers `clone3` with ENOSYS so that thread creation falls back to `clone`, whose
//!   flags the filter can read;
//! - killed with the tool (`--die-with-parent`), in a new session (no terminal injection).
//!
//! bubblewrap is the setuid-free sandbox that Flatpak builds on: it sets up all of the above
//! from one well-reviewed program, so none of it is written here by hand. Where it is missing
//! or the kernel refuses user namespaces, [`check`] says why, and the tool refuses to run
//! (fails closed) unless the workflow chose [`Sandbox::None`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};

/// How the python tool confines model-written code.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Sandbox {
    /// bubblewrap namespaces, no capabilities, a seccomp filter, a read-only system and a
    /// private scratch folder. The tool refuses to run where this cannot be set up.
    #[default]
    Bwrap,
    /// No boundary: only the interpreter's audit hook, import allow-list and limits. Never
    /// chosen by default; a node that runs with it records the metric `python_unsandboxed`.
    None,
}

impl Sandbox {
    /// Whether this is the default (left out of params, so cache keys do not change).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Where the interpreter lives: the real executable (not a shim) and the folders it reads.
#[derive(Debug, Clone)]
pub(crate) struct Interpreter {
    pub executable: PathBuf,
    pub roots: Vec<PathBuf>,
}

/// Why the boundary cannot be set up for an interpreter here (cloneable: probes are kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundaryError {
    /// A program could not be started.
    #[error("cannot start {program}: {reason}")]
    Start {
        /// The interpreter, or `the sandbox`.
        program: String,
        /// Why.
        reason: String,
    },
    /// The interpreter's probe failed.
    #[error("{python} -c … failed: {stderr}")]
    Probe {
        /// The interpreter.
        python: String,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// The interpreter's probe answered something unreadable.
    #[error("{python} gave an unreadable answer: {reason}")]
    Answer {
        /// The interpreter.
        python: String,
        /// What was wrong.
        reason: String,
    },
    /// A file or folder could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The seccomp programs cannot be built for this machine.
    #[error("no seccomp filter for {arch}: {reason}")]
    Seccomp {
        /// The architecture.
        arch: String,
        /// Why.
        reason: String,
    },
    /// `bwrap` is missing.
    #[error("bubblewrap (`bwrap`) is not installed")]
    NoBwrap,
    /// `bwrap` refused to set up the sandbox.
    #[error("bwrap failed: {0}")]
    Bwrap(String),
}

impl BoundaryError {
    fn io(path: &Path, e: &std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }
    fn seccomp(reason: impl std::fmt::Display) -> Self {
        Self::Seccomp {
            arch: std::env::consts::ARCH.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Ask `python` (outside any sandbox, once per path) where its installation is.
pub(crate) fn interpreter(python: &Path) -> Result<Interpreter, BoundaryError> {
    static SEEN: Probes = OnceLock::new();
    once_per_path(&SEEN, python, probe_interpreter)
}

/// Results of a probe, by interpreter path.
type Probes = OnceLock<Mutex<HashMap<PathBuf, Result<Interpreter, BoundaryError>>>>;

/// `probe(python)`, run once per path for the life of the process.
fn once_per_path(
    seen: &'static Probes,
    python: &Path,
    probe: fn(&Path) -> Result<Interpreter, BoundaryError>,
) -> Result<Interpreter, BoundaryError> {
    let mut seen = seen
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    seen.entry(python.to_owned())
        .or_insert_with(|| probe(python))
        .clone()
}

fn probe_interpreter(python: &Path) -> Result<Interpreter, BoundaryError> {
    const ASK: &str = "import json, sys; print(json.dumps([sys.executable, \
                       [sys.prefix, sys.base_prefix, sys.exec_prefix] + sys.path]))";
    let out = Command::new(python)
        .args(["-I", "-c", ASK])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BoundaryError::Start {
            program: python.display().to_string(),
            reason: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(BoundaryError::Probe {
            python: python.display().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let (executable, paths): (PathBuf, Vec<String>) =
        serde_json::from_slice(&out.stdout).map_err(|e| BoundaryError::Answer {
            python: python.display().to_string(),
            reason: e.to_string(),
        })?;
    let executable = executable
        .canonicalize()
        .map_err(|e| BoundaryError::io(&executable, &e))?;
    let mut roots: Vec<PathBuf> = paths
        .iter()
        .filter(|p| !p.is_empty())
        .filter_map(|p| Path::new(p).canonicalize().ok())
        .filter(|p| p.is_dir() && p != Path::new("/"))
        .collect();
    if let Some(bin) = executable.parent() {
        roots.push(bin.to_owned());
    }
    roots.sort();
    roots.dedup();
    // Only the outermost folders: a nested one is inside an earlier bind already.
    let mut outer: Vec<PathBuf> = Vec::new();
    for r in roots {
        if !outer.iter().any(|o| r.starts_with(o)) && !r.starts_with("/usr") {
            outer.push(r);
        }
    }
    Ok(Interpreter {
        executable,
        roots: outer,
    })
}

/// The two seccomp programs (raw `struct sock_filter` arrays, native byte order): the
/// refusals (EPERM), and `clone3` answered with ENOSYS.
pub(crate) fn seccomp_programs() -> Result<(Vec<u8>, Vec<u8>), BoundaryError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| BoundaryError::seccomp(format!("{e:?}")))?;
    let mut refuse: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|n| (*n, vec![])).collect();
    let cond = |arg: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, v: u64| {
        SeccompCondition::new(arg, len, op, v).map_err(BoundaryError::seccomp)
    };
    // A clone that makes a process, not a thread.
    refuse.insert(
        libc::SYS_clone,
        vec![
            SeccompRule::new(vec![cond(
                CLONE_FLAGS_ARG,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
                0,
            )?])
            .map_err(BoundaryError::seccomp)?,
        ],
    );
    // Sockets other than Unix ones.
    refuse.insert(
        libc::SYS_socket,
        vec![
            SeccompRule::new(vec![cond(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Ne,
                libc::AF_UNIX as u64,
            )?])
            .map_err(BoundaryError::seccomp)?,
        ],
    );
    let program = |rules, errno: i32| -> Result<Vec<u8>, BoundaryError> {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .map_err(BoundaryError::seccomp)?;
        let bpf: BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| BoundaryError::seccomp(e))?;
        let mut bytes = Vec::with_capacity(bpf.len() * 8);
        for i in bpf {
            bytes.extend_from_slice(&i.code.to_ne_bytes());
            bytes.push(i.jt);
            bytes.push(i.jf);
            bytes.extend_from_slice(&i.k.to_ne_bytes());
        }
        Ok(bytes)
    };
    let clone3: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_clone3, vec![])].into();
    Ok((
        program(refuse, libc::EPERM)?,
        program(clone3, libc::ENOSYS)?,
    ))
}

/// `clone`'s flags are its first argument on x86_64 and aarch64.
const CLONE_FLAGS_ARG: u8 = 0;

/// System calls refused outright.
const DENIED: &[i64] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_setns,
    libc::SYS_unshare,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_pidfd_getfd,
    libc::SYS_kcmp,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_syslog,
    libc::SYS_vhangup,
    libc::SYS_fanotify_init,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_personality,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_fork,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_vfork,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
];

/// Read-only system folders bound when they exist (merged-`/usr` systems link most of them).
const SYSTEM: &[&str] = &["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"];

/// Opens the seccomp programs as descriptors 3 and 4 (bwrap reads its filters from
/// descriptors), closes every other descriptor the parent let through, and runs bwrap.
const LAUNCH: &str = r#"import os, sys
for target, path in ((3, sys.argv[1]), (4, sys.argv[2])):
    fd = os.open(path, os.O_RDONLY)
    if fd != target:
        os.dup2(fd, target)
        os.close(fd)
    os.set_inheritable(target, True)
os.closerange(5, 1 << 20)
os.execvp(sys.argv[3], sys.argv[3:])
"#;

/// The command that starts `program args` inside the boundary. `dir` holds the seccomp
/// programs (`deny.bpf`, `clone3.bpf`) and the worker script (`sandbox.py`, bound read-only
/// at the same path), all written by [`write_files`]; `scratch` is the writable folder.
pub(crate) fn command(
    dir: &Path,
    scratch: &Path,
    interp: &Interpreter,
    program: &Path,
    args: &[String],
) -> Command {
    let mut c = Command::new(&interp.executable);
    c.args(["-I", "-S", "-c", LAUNCH])
        .arg(dir.join("deny.bpf"))
        .arg(dir.join("clone3.bpf"))
        .arg("bwrap")
        .args([
            "--unshare-all",
            "--unshare-user",
            "--die-with-parent",
            "--new-session",
        ])
        .args(["--cap-drop", "ALL", "--uid", "65534", "--gid", "65534"])
        .args(["--hostname", "sandbox"]);
    for s in SYSTEM {
        c.args(["--ro-bind-try", s, s]);
    }
    for r in &interp.roots {
        c.arg("--ro-bind").arg(r).arg(r);
    }
    let worker = dir.join("sandbox.py");
    c.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"])
        .arg("--ro-bind")
        .arg(&worker)
        .arg(&worker)
        .arg("--bind")
        .arg(scratch)
        .arg(scratch)
        .arg("--chdir")
        .arg(scratch)
        .arg("--clearenv")
        .args(["--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin"])
        .arg("--setenv")
        .arg("HOME")
        .arg(scratch);
    for (k, v) in super::WORKER_ENV {
        c.args(["--setenv", k, v]);
    }
    c.args(["--add-seccomp-fd", "3", "--add-seccomp-fd", "4", "--"])
        .arg(program)
        .args(args)
        // The launcher needs only PATH (to find bwrap); bwrap clears the rest anyway.
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        );
    c
}

/// Whether the boundary can be set up for `python` here (probed once per path): `Err` says
/// why not.
pub(crate) fn check(python: &Path) -> Result<Interpreter, BoundaryError> {
    static SEEN: Probes = OnceLock::new();
    once_per_path(&SEEN, python, probe_boundary)
}

fn probe_boundary(python: &Path) -> Result<Interpreter, BoundaryError> {
    let interp = interpreter(python)?;
    let dir = tempfile::Builder::new()
        .prefix("scorch-py-check-")
        .tempdir()
        .map_err(|e| BoundaryError::io(&std::env::temp_dir(), &e))?;
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).map_err(|e| BoundaryError::io(&scratch, &e))?;
    write_files(dir.path(), "")?;
    let pass = ["-I".into(), "-c".into(), "pass".into()];
    let out = command(dir.path(), &scratch, &interp, &interp.executable, &pass)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BoundaryError::Start {
            program: "the sandbox".into(),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        Ok(interp)
    } else {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(if why.contains("FileNotFoundError") {
            BoundaryError::NoBwrap
        } else {
            BoundaryError::Bwrap(why)
        })
    }
}

/// Write the seccomp programs and the worker script into `dir`.
pub(crate) fn write_files(dir: &Path, worker: &str) -> Result<(), BoundaryError> {
    let (deny, clone3) = seccomp_programs()?;
    for (name, bytes) in [
        ("deny.bpf", deny.as_slice()),
        ("clone3.bpf", clone3.as_slice()),
        ("sandbox.py", worker.as_bytes()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| BoundaryError::io(&path, &e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The boundary alone, without the worker's audit hook: what a process that got past
    //! every check inside Python could still do.
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Run `program args` inside the boundary; its exit status and output.
    fn inside(program: &str, args: &[&str]) -> (bool, String, tempfile::TempDir) {
        let python = Path::new("python3");
        check(python).expect("the boundary is available where the tests run");
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        write_files(dir.path(), "").unwrap();
        let interp = interpreter(python).unwrap();
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let out = command(dir.path(), &scratch, &interp, Path::new(program), &args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text, dir)
    }

    #[test]
    fn mounting_and_entering_namespaces_are_refused() {
        let (ok, out, _d) = inside("/usr/bin/mount", &["-o", "remount,bind,rw", "/usr"]);
        assert!(!ok, "remount succeeded: {out}");
        let (ok, out, _d) = inside("/usr/bin/nsenter", &["-t", "1", "-m", "-n", "true"]);
        assert!(!ok, "nsenter succeeded: {out}");
        let (ok, out, _d) = inside("/usr/bin/unshare", &["-U", "true"]);
        assert!(!ok, "unshare succeeded: {out}");
    }

    #[test]
    fn the_host_is_read_only_invisible_and_unreachable() {
        let me = std::process::id();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let code = format!(
            "import os, socket, sys\n\
             print('pid-visible', os.path.exists('/proc/{me}'))\n\
             print('env', sorted(os.environ))\n\
             print('fds', sorted(os.listdir('/proc/self/fd')))\n\
             print('root', sorted(os.listdir('/')))\n\
             try:\n    open('/usr/escaped', 'w')\nexcept OSError as e:\n    print('write', e.errno)\n\
             try:\n    os.kill({me}, 9)\nexcept OSError as e:\n    print('kill', e.errno)\n\
             try:\n    os.pidfd_open(1)\nexcept OSError as e:\n    print('pidfd', e.errno)\n\
             try:\n    os.fork()\nexcept OSError as e:\n    print('fork', e.errno)\n\
             try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\nexcept OSError as e:\n    print('connect', e.errno)\n\
             open('written', 'w').write('ok')\n"
        );
        let exe = interpreter(Path::new("python3")).unwrap().executable;
        let (ok, out, dir) = inside(exe.to_str().unwrap(), &["-I", "-c", &code]);
        assert!(ok, "{out}");
        assert!(out.contains("pid-visible False"), "{out}");
        // Only the variables the boundary sets (Python adds LC_CTYPE, bwrap PWD).
        let env = out.lines().find(|l| l.starts_with("env ")).unwrap();
        let allowed = [
            "HOME",
            "LC_CTYPE",
            "MKL_NUM_THREADS",
            "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "PATH",
            "PWD",
            "PYTHONHASHSEED",
        ];
        for name in env[5..].trim_matches(['[', ']']).split(", ") {
            assert!(
                allowed.contains(&name.trim_matches('\'')),
                "{name} reached the sandbox: {env}"
            );
        }
        // 3 is the listing's own descriptor.
        assert!(
            out.contains("fds ['0', '1', '2', '3']"),
            "descriptors leaked in: {out}"
        );
        for host in ["'etc'", "'home'", "'work'", "'var'", "'opt'"] {
            assert!(!out.contains(host), "{host} is visible: {out}");
        }
        assert!(out.contains("write 30"), "EROFS expected: {out}");
        assert!(out.contains("kill 3"), "ESRCH expected: {out}");
        assert!(out.contains("pidfd 1"), "EPERM expected: {out}");
        assert!(out.contains("fork 1"), "EPERM expected: {out}");
        assert!(out.contains("connect 1"), "EPERM expected: {out}");
        assert!(
            listener.accept().is_err(),
            "the host's listener was reached"
        );
        assert!(!Path::new("/usr/escaped").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("scratch/written")).unwrap(),
            "ok"
        );
    }
}
