# change the hook's data
# expect: refuses to read
{escape}sysm.modules['__main__'].DENY_PREFIXES = ()
sysm.modules['__main__'].READABLE = ('/',)
print(open('{canary}').read())
