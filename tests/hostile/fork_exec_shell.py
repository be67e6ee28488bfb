# a shell through _posixsubprocess.fork_exec (no audit event)
# expect: Operation not permitted
{escape}ps = sysm.modules['_frozen_importlib']._gcd_import('_posixsubprocess')
def run(argv, vfork=False):
    r, w = posix.pipe()
    head = (argv, [argv[0]], True, (w,), None, None, -1, -1, -1, -1, -1, -1, r, w, True, False)
    try:
        return ps.fork_exec(*head, -1, None, None, None, -1, None, vfork)
    except TypeError:
        return ps.fork_exec(*head, -1, None, None, None, -1, None)
run([b'/bin/sh', b'-c', b'touch {outside}'])
