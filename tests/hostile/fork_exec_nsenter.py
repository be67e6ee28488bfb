# enter the parent's mount and network namespaces with nsenter
# expect: Operation not permitted
{escape}{fork_exec}run([b'/usr/bin/nsenter', b'-t', b'{parent}', b'-m', b'-n', b'/bin/sh', b'-c', b'touch {outside}'])
