# read /etc/passwd
# expect: refuses to read
print(open('/etc/passwd').read())
