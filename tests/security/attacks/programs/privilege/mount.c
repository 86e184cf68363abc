// summary: mount: tmpfs, proc, a bind of /, a remount of / read-write, cgroup v1 (release_agent,
//    CVE-2022-0492)
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>

static int escaped;

static void try_mount(const char *src, const char *dst, const char *type, unsigned long flags,
                      const char *data) {
    if (mount(src, dst, type, flags, data) == 0) {
        printf("ESCAPED mount(%s, %s, %s, %#lx, %s)\n", src, dst, type, flags, data);
        escaped = 1;
    } else {
        printf("mount %s on %s: %s\n", type ? type : src, dst, strerror(errno));
    }
}

int main(void) {
    try_mount("none", "/tmp", "tmpfs", 0, "size=1m");
    try_mount("proc", "/workspace", "proc", 0, NULL);
    try_mount("/", "/workspace", NULL, MS_BIND | MS_REC, NULL);
    try_mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL);
    try_mount(NULL, "/usr", NULL, MS_REMOUNT | MS_BIND, NULL);
    try_mount(NULL, "/proc/sys", NULL, MS_REMOUNT | MS_BIND, NULL);
    try_mount("cgroup", "/tmp", "cgroup", 0, "rdma");
    try_mount("cgroup", "/tmp", "cgroup", 0, "memory");
    try_mount("cgroup2", "/tmp", "cgroup2", 0, NULL);
    try_mount("sysfs", "/tmp", "sysfs", 0, NULL);
    try_mount("none", "/", NULL, MS_SHARED | MS_REC, NULL);
    try_mount("/tmp", "/workspace", NULL, MS_MOVE, NULL);
    if (!escaped) puts("HELD");
    return 0;
}
