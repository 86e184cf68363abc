# summary: raise every hard rlimit above what the policy set (CPU, file size, fds, stack, core)
import resource

escaped = []
for name in ("RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_STACK", "RLIMIT_CORE"):
    which = getattr(resource, name)
    soft, hard = resource.getrlimit(which)
    print(name, soft, hard)
    if hard == resource.RLIM_INFINITY and name != "RLIMIT_STACK":
        escaped.append(f"{name} has no hard limit")
        continue
    try:
        resource.setrlimit(which, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        escaped.append(f"raised {name} to unlimited")
    except (OSError, ValueError):
        pass
    try:
        resource.prlimit(1, which, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        escaped.append(f"raised the init's {name}")
    except (OSError, ValueError):
        pass
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")
