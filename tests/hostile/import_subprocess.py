# import subprocess
# expect: not allowed in the sandbox
import subprocess
subprocess.run(['true'])
