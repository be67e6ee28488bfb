# exit
# expect: exiting is not allowed
raise SystemExit(3)
