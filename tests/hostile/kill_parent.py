# kill the parent
# expect: refuses os.kill
{escape}posix.kill(posix.getppid(), 9)
