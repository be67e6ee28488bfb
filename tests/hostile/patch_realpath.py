# patch realpath
# expect: refuses to read
{escape}pp = sysm.modules['posixpath']
pp.realpath = lambda p, **k: '.'
print(open('{canary}').read())
