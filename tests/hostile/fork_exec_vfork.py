# the vfork path of fork_exec
# expect: Operation not permitted
{escape}{fork_exec}run([b'/bin/sh', b'-c', b'touch {outside}'], vfork=True)
