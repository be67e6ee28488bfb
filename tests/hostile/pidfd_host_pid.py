# a pidfd of a host process
# expect: Operation not permitted
{escape}posix.pidfd_open({parent})
