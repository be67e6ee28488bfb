# gc introspection
# expect: refuses gc.
{escape}gc = BI.load_module('gc')
gc.get_objects()
