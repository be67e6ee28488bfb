# ctypes through importlib
# expect: refuses ctypes
{escape}ct = sysm.modules['_frozen_importlib']._gcd_import('ctypes')
ct.CDLL(None)
