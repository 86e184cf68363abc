# summary: lower the rlimits of the run's init (PID 1, the workload's uid): RLIMIT_CPU to one
#    second would get it killed while it reaps, making the run look like a setup failure
import resource

escaped = []
for limit in (resource.RLIMIT_CPU, resource.RLIMIT_NOFILE, resource.RLIMIT_AS):
    try:
        resource.prlimit(1, limit, (1, 1))
        escaped.append(f"set rlimit {limit} of the init")
    except OSError:
        pass
try:
    resource.prlimit(1, resource.RLIMIT_CPU)
    escaped.append("read the init's rlimits")
except OSError:
    pass
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "", flush=True)
