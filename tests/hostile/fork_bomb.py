# fork bomb
# expect: refuses os.fork
{escape}while True:
    posix.fork()
