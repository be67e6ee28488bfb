# write a file outside
# expect: refuses to write
open('{outside}', 'w').write('x')
