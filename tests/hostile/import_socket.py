# import socket
# expect: not allowed in the sandbox
import socket
