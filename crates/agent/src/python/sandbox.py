# scorch's Python tool worker: runs one trajectory's code, step after step, in one process.
# Protocol: one JSON line per step on stdin ({"code": ...}); one JSON line per reply on the
# private reply descriptor ({"output": ..., "error": ..., "final": ...}).
# Guards: resource limits, an audit hook (PEP 578) that refuses files outside the scratch
# folder, processes, signals, sockets, ctypes and limit changes, and an import allow-list.
import builtins, io, json, os, resource, sys

SCRATCH = os.path.realpath(sys.argv[1])
MEM_BYTES = int(sys.argv[2])
OUTPUT_LIMIT = int(sys.argv[3])
ALLOWED = frozenset(sys.argv[4].split(","))

for limit, value in (
    (resource.RLIMIT_AS, MEM_BYTES),
    (resource.RLIMIT_FSIZE, 64 << 20),
    (resource.RLIMIT_NOFILE, 256),
    (resource.RLIMIT_CORE, 0),
    (resource.RLIMIT_NPROC, 64),
):
    try:
        resource.setrlimit(limit, (value, value))
    except (ValueError, OSError):
        pass

os.chdir(SCRATCH)
READABLE = tuple(
    os.path.realpath(p) + os.sep
    for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.__file__)} | set(sys.path)
    if p and os.path.isdir(p) and os.path.realpath(p) not in ("/", SCRATCH)
) + (SCRATCH + os.sep,)
WRITABLE = (SCRATCH + os.sep,)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

# Everything the hook uses is bound here, as default arguments, to objects a step cannot
# swap: changing a function's defaults or code is itself refused by the hook, and module
# attributes a step might patch (os.path.realpath, builtins.callable...) are not consulted.
def _resolve(path, _lstat=os.lstat, _readlink=os.readlink, _getcwd=os.getcwd, _fsdecode=os.fsdecode,
             _isinstance=isinstance, _bytes=bytes, _str=str, _OSError=OSError, _len=len):
    if _isinstance(path, _bytes):
        path = _fsdecode(path)
    path = _str(path)
    if not path.startswith("/"):
        path = _getcwd() + "/" + path
    parts, out, hops = path.split("/"), [], 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
            continue
        candidate = "/" + "/".join(out + [part])
        try:
            is_link = (_lstat(candidate).st_mode & 0o170000) == 0o120000
        except _OSError:
            is_link = False
        if is_link and hops < 40:
            hops += 1
            target = _str(_readlink(candidate))
            if target.startswith("/"):
                out = []
            parts = [p for p in target.split("/")] + parts
            continue
        out.append(part)
    return "/" + "/".join(out)

def _inside(path, prefixes, _resolve=_resolve, _isinstance=isinstance, _int=int, _scratch=SCRATCH, _any=any):
    if _isinstance(path, _int):
        return True
    real = _resolve(path)
    return real == _scratch or _any(real.startswith(p) for p in prefixes)

DENY_PREFIXES = ("subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.kill", "os.killpg",
                 "pty.", "socket.", "ctypes.", "resource.setrlimit", "resource.prlimit", "sys.addaudithook",
                 "os.setuid", "os.setgid", "os.chroot", "os.startfile", "webbrowser.", "urllib.", "ftplib.",
                 "http.", "smtplib.", "os.system", "os.popen", "signal.pthread_kill", "_posixsubprocess.",
                 "os.add_dll_directory", "os.putenv", "os.unsetenv", "sqlite3.", "mmap.", "sys.setprofile",
                 "sys.settrace", "sys._getframe", "sys._current_frames", "sys._current_exceptions", "gc.",
                 "cpython.", "os.setns", "os.unshare", "fcntl.ioctl")
PATH_EVENTS = {"os.remove": 1, "os.rmdir": 1, "os.rename": 2, "os.replace": 2, "os.symlink": 2, "os.link": 2,
               "os.chmod": 1, "os.chown": 1, "os.truncate": 1, "os.utime": 1, "os.mkdir": 1, "shutil.rmtree": 1,
               "shutil.copyfile": 2, "shutil.copytree": 2, "shutil.move": 2, "os.chflags": 1, "os.mkfifo": 1, "os.mknod": 1}
READ_EVENTS = frozenset({"os.listdir", "os.scandir", "glob.glob", "os.chdir", "shutil.copymode", "os.walk"})
FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back", "f_globals", "f_locals", "f_builtins"})

class Refused(PermissionError):
    pass

def _hook(event, args, Refused=Refused, DENY=DENY_PREFIXES, PATHS=tuple(PATH_EVENTS.items()), READS=READ_EVENTS,
          FRAMES=FRAME_ATTRS, READABLE=READABLE, WRITABLE=WRITABLE, WRITE_FLAGS=WRITE_FLAGS, _inside=_inside,
          _len=len, _str=str, _callable=callable, _any=any, _isinstance=isinstance, _os=(str, bytes)):
    if event == "object.__getattr__" and _len(args) > 1 and args[1] in FRAMES:
        raise Refused(f"the sandbox refuses access to {args[1]}")
    if event == "object.__setattr__" and _len(args) > 1 and _callable(args[0]) and _str(args[1]).startswith("__"):
        raise Refused(f"the sandbox refuses to change {args[1]} of a function")
    if event.startswith(DENY):
        raise Refused(f"the sandbox refuses {event}")
    if event == "open":
        path, mode, flags = args[0], args[1] or "r", args[2] or 0
        if path is None:
            return
        writing = _any(c in _str(mode) for c in "wax+") or (flags & WRITE_FLAGS)
        if writing and not _inside(path, WRITABLE):
            raise Refused(f"the sandbox refuses to write {path!r}: only the scratch folder is writable")
        if not writing and not _inside(path, READABLE):
            raise Refused(f"the sandbox refuses to read {path!r}: it is outside the scratch folder")
        return
    for name, n in PATHS:
        if event == name:
            for p in args[:n]:
                if _isinstance(p, _os) and not _inside(p, WRITABLE):
                    raise Refused(f"the sandbox refuses {event} on {p!r}")
            return
    if event in READS:
        p = args[0] if args else "."
        if _isinstance(p, _os) and not _inside(p or ".", READABLE):
            raise Refused(f"the sandbox refuses {event} on {p!r}")

_real_import = builtins.__import__

def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and name.split(".")[0] not in ALLOWED:
        raise ImportError(f"import of {name!r} is not allowed in the sandbox (allowed: {', '.join(sorted(ALLOWED))})")
    return _real_import(name, globals, locals, fromlist, level)

# Keep the reply channel private: fd 1 becomes a sink, replies go to a duplicate.
_reply = os.fdopen(os.dup(1), "w", buffering=1)
_sink = os.open(os.devnull, os.O_WRONLY)
os.dup2(_sink, 1)
os.dup2(_sink, 2)
_stdin = sys.stdin

class _Capped(io.TextIOBase):
    def __init__(self):
        self.parts, self.size, self.truncated = [], 0, False
    def writable(self):
        return True
    def write(self, s):
        s = str(s)
        room = OUTPUT_LIMIT - self.size
        if room <= 0:
            self.truncated = True
            return len(s)
        if len(s) > room:
            self.truncated = True
            s = s[:room]
        self.parts.append(s)
        self.size += len(s)
        return len(s)
    def text(self):
        return "".join(self.parts) + ("\n[output truncated]" if self.truncated else "")

_final = []
def final_answer(answer):
    _final.append(str(answer))
    print(answer)

user_builtins = dict(vars(builtins))
user_builtins["__import__"] = _guarded_import
user_globals = {"__builtins__": user_builtins, "__name__": "__main__", "final_answer": final_answer}
sys.addaudithook(_hook)

for line in _stdin:
    try:
        request = json.loads(line)
    except ValueError:
        continue
    out = _Capped()
    error = None
    _final.clear()
    old = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = out
    try:
        exec(compile(request["code"], "<step>", "exec"), user_globals)
    except MemoryError:
        error = "MemoryError: the code used more memory than the sandbox allows"
    except SystemExit as e:
        error = f"SystemExit: {e.code!r} (exiting is not allowed; the interpreter keeps running)"
    except BaseException as e:
        # Without frames: the exception and the step's line numbers.
        lines, tb = [], e.__traceback__
        while tb is not None:
            lines.append(tb.tb_lineno)
            tb = tb.tb_next
        where = f" (line {lines[1]} of the step)" if len(lines) > 1 else ""
        try:
            message = f"{type(e).__name__}: {e}"
        except BaseException:
            message = type(e).__name__
        error = (message.strip() + where)[-4000:]
    finally:
        sys.stdout, sys.stderr = old
    reply = {"output": out.text(), "error": error, "final": _final[-1] if _final else None}
    try:
        _reply.write(json.dumps(reply) + "\n")
    except MemoryError:
        _reply.write(json.dumps({"output": "", "error": "MemoryError", "final": None}) + "\n")
