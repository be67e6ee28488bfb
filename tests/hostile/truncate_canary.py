# truncate the canary
# expect: refuses to write
open('{canary}', 'w')
