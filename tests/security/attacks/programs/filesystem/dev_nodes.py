# summary: open the host's devices (disks, /dev/mem, /dev/kmsg, kvm, fuse, tun, loop, console)
import os

expected = {
    "null",
    "zero",
    "full",
    "random",
    "urandom",
    "fd",
    "stdin",
    "stdout",
    "stderr",
    "shm",
    "pts",
    "ptmx",
    "tty",
    "mqueue",
}
escaped = [f"unexpected /dev entry {name}" for name in sorted(set(os.listdir("/dev")) - expected)]
for name in (
    "sda",
    "sda1",
    "vda",
    "vda1",
    "nvme0n1",
    "xvda",
    "mem",
    "kmem",
    "port",
    "kmsg",
    "console",
    "tty0",
    "tty1",
    "kvm",
    "fuse",
    "net/tun",
    "loop0",
    "loop-control",
    "mapper/control",
    "btrfs-control",
    "hwrng",
    "cpu/0/msr",
    "dri/card0",
    "snd/seq",
    "autofs",
    "vhost-net",
    "userfaultfd",
    "uinput",
    "rtc0",
    "watchdog",
):
    for flags in (os.O_RDONLY, os.O_WRONLY):
        try:
            fd = os.open(f"/dev/{name}", flags | os.O_NONBLOCK)
            escaped.append(f"opened /dev/{name}")
            os.close(fd)
        except OSError:
            pass
try:
    fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    escaped.append("opened /dev/tty: there is a controlling terminal")
except OSError:
    pass
for line in sorted(set(escaped)):
    print("ESCAPED", line)
print("HELD" if not escaped else "")
