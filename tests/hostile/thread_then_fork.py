# fork from a thread
# expect: alive
# refused: no
{escape}th = BI.load_module('_thread')
import time
th.start_new_thread(lambda: posix.fork(), ())
time.sleep(0.5)
print('alive')
