# read a file outside
# expect: refuses to read
print(open('{canary}').read())
