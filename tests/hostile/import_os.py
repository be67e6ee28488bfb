# import os
# expect: not allowed in the sandbox
import os
os.remove('x')
