# hard exit
# expect: interpreter exited
{escape}posix._exit(0)
