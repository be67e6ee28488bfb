# symlink out of the scratch folder
# expect: refuses os.symlink
{escape}posix.symlink('/etc', 'etc')
print(open('etc/passwd').read())
