# summary: read the host's credentials and secrets: /etc/shadow, gshadow, sudoers, ssh keys,
#    history, the real /etc/passwd
# control: host
import glob
from pathlib import Path

found = []
for path in [
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/root/.bash_history",
    "/root/.ssh/id_rsa",
    "/root/.ssh/authorized_keys",
    "/etc/security/opasswd",
    "/var/lib/sss/secrets",
]:
    try:
        with open(path, "rb") as file:
            file.read(16)
        found.append(f"read {path}")
    except OSError:
        pass
found += [f"listed {p}" for p in glob.glob("/root/*") + glob.glob("/home/*")]
users = [line.split(":")[0] for line in Path("/etc/passwd").read_text().splitlines() if ":" in line]
print("users:", users)
if set(users) - {"root", "sandbox"}:
    found.append(f"the host's /etc/passwd: {users}")
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")
