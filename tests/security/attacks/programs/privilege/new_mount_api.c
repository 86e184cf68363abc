// summary: the new mount API the old denylists forgot (flatpak CVE-2021-41133): fsopen, fsmount,
//    open_tree, move_mount, mount_setattr
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_open_tree
#define SYS_open_tree 428
#define SYS_move_mount 429
#define SYS_fsopen 430
#define SYS_fsconfig 431
#define SYS_fsmount 432
#define SYS_fspick 433
#define SYS_mount_setattr 442
#endif

static int escaped;

static long check(const char *what, long r) {
    if (r >= 0) {
        printf("ESCAPED %s returned %ld\n", what, r);
        escaped = 1;
    } else {
        printf("%s: %s\n", what, strerror(errno));
    }
    return r;
}

int main(void) {
    long fs = check("fsopen(tmpfs)", syscall(SYS_fsopen, "tmpfs", 0));
    if (fs >= 0) {
        syscall(SYS_fsconfig, fs, 6 /* FSCONFIG_CMD_CREATE */, NULL, NULL, 0);
        check("fsmount", syscall(SYS_fsmount, fs, 0, 0));
    }
    long tree = check("open_tree(/, OPEN_TREE_CLONE|AT_RECURSIVE)",
                      syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* CLONE */ | 0x8000 /* RECURSIVE */));
    check("move_mount", syscall(SYS_move_mount, tree >= 0 ? tree : AT_FDCWD, "", AT_FDCWD,
                                "/workspace", 4 /* MOVE_MOUNT_F_EMPTY_PATH */));
    check("fspick(/)", syscall(SYS_fspick, AT_FDCWD, "/", 0));
    unsigned long long attr[4] = {0, 1 /* clear MOUNT_ATTR_RDONLY */, 0, 0};
    check("mount_setattr(/, clear RDONLY)",
          syscall(SYS_mount_setattr, AT_FDCWD, "/", 0, attr, sizeof attr));
    if (!escaped) puts("HELD");
    return 0;
}
