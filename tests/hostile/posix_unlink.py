# delete through posix (allow-list bypass)
# expect: refuses os.remove
{escape}posix.unlink('{canary}')
