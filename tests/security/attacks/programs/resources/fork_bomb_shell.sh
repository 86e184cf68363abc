# summary: the classic shell fork bomb, left running until the wall-clock limit
# limits: timeout=3
# expect: timeout
# verdict: none
# check: r.wall_time < 8 * T
b() { b | b & }
b
sleep 30
echo "ESCAPED the fork bomb did not stop the shell"
