# huge output
# expect: [output truncated]
# refused: no
print('x' * 10 ** 7)
