# os.system through posix
# expect: refuses os.system
{escape}posix.system('touch {outside}')
