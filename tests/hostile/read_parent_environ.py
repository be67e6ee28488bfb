# read the parent's environment (its API keys)
# expect: refuses to read
print(open('/proc/{parent}/environ').read())
