# exec of an import
# expect: not allowed in the sandbox
exec('import shutil')
