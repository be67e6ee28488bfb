# read /proc/self/environ
# expect: refuses to read
print(open('/proc/self/environ').read())
