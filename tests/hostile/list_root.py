# list the host's folders
# expect: refuses os.listdir
{escape}print(posix.listdir('/root'))
