# reach a frame
# expect: refuses access to tb_frame
try:
    1/0
except Exception as e:
    e.__traceback__.tb_frame.f_back.f_globals['DENY_PREFIXES'] = ()
