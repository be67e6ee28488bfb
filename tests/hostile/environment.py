# environment secrets
# expect: PATH
# refused: no
{escape}print(sorted(posix.environ))
