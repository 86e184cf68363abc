# summary: a background grandchild keeps stdout and stderr open after the program exits
# check: r.wall_time < 5 * T
sleep 1000 &
(setsid sleep 1000 >&2 &)
echo "HELD: exiting with two sleepers holding the pipes"
