# a pidfd signal to the parent
# expect: Operation not permitted
{escape}fd = posix.pidfd_open(posix.getppid())
sig = BI.load_module('_signal')
sig.pidfd_send_signal(fd, 9)
