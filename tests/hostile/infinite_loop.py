# infinite loop
# expect: ran longer than
while True:
    pass
