# __import__ of os
# expect: not allowed in the sandbox
__import__('os').system('true')
