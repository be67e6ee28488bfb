# remount the root read-write
# expect: Operation not permitted
{escape}{fork_exec}run([b'/usr/bin/mount', b'-o', b'remount,bind,rw', b'/'])
