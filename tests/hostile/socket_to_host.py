# socket to a listener on the host
# expect: refuses socket
{escape}s = sysm.modules['_frozen_importlib']._gcd_import('_socket')
x = s.socket()
x.connect(('127.0.0.1', {port}))
