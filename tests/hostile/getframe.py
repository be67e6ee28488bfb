# sys._getframe
# expect: refuses sys._getframe
{escape}sysm._getframe(1)
