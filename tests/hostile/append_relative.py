# append through a relative path
# expect: refuses to write
import json
open('../../../..' + '{outside}', 'a').write('x')
