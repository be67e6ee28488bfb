# a shell through _posixsubprocess.fork_exec (no audit event)
# expect: Operation not permitted
{escape}{fork_exec}run([b'/bin/sh', b'-c', b'touch {outside}'])
