# import ctypes
# expect: not allowed in the sandbox
import ctypes
