# list memory bomb
# expect: MemoryError
x = [0] * (10 ** 10)
