# summary: fingerprint the host: machine-id (/etc, dbus), DMI serials and UUIDs, disk serials
# harness: secret
# control: host
import glob
import sys
from pathlib import Path

machine_id = sys.argv[3]
found = []
for path in ["/etc/machine-id", "/var/lib/dbus/machine-id", "/run/machine-id"]:
    try:
        if machine_id != "-" and machine_id in Path(path).read_text():
            found.append(f"{path} is the host's machine-id")
    except OSError:
        pass
for path in glob.glob("/sys/class/dmi/id/*") + glob.glob("/dev/disk/by-id/*"):
    found.append(f"{path} exists")
# Kernel-global and readable in any container; not a host file. Reported, not counted.
boot_id = Path("/proc/sys/kernel/random/boot_id")
print("note: boot_id", boot_id.read_text().strip() if boot_id.exists() else "absent")
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")
