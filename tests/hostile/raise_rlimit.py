# raise the memory limit
# expect: refuses resource.setrlimit
{escape}r = BI.load_module('resource')
r.setrlimit(r.RLIMIT_AS, (-1, -1))
