# memory bomb
# expect: MemoryError
x = 'a' * (10 ** 10)
