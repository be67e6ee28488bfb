// Shared by the build scripts of the packages whose binaries link libtorch: put the wheel's
// `torch/lib` on the binary's rpath, and keep `libtorch_cuda.so` linked (rustc passes
// `--as-needed`, which would drop it, and CUDA would then be silently unavailable).
use std::path::PathBuf;
use std::process::Command;

fn torch_lib() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", "import os, importlib.util as u; s = u.find_spec('torch'); print(os.path.join(os.path.dirname(s.origin), 'lib'))"])
        .output()
        .ok()?;
    out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Link arguments for the targets that `targets` names, as suffixes of cargo's directive:
/// `""` (every target of the package), `"-bin=NAME"`, `"-tests"`, `"-benches"`, `"-examples"`.
fn link_torch(targets: &[&str]) {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    if let Some(lib) = torch_lib().filter(|l| l.is_dir()) {
        let cuda = lib.join("libtorch_cuda.so").exists();
        if cuda {
            println!("cargo:rustc-link-search=native={}", lib.display());
        }
        for t in targets {
            println!("cargo:rustc-link-arg{t}=-Wl,-rpath,{}", lib.display());
            if cuda {
                println!("cargo:rustc-link-arg{t}=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
            }
        }
    }
}
