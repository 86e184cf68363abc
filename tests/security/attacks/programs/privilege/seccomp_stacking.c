// summary: loosen the filter by stacking: an allow-all filter, TSYNC, a user-notify filter on
//    mount, unsetting no_new_privs
// limits: timeout=5
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int escaped;

/* In a child: a filter that hands mount(2) to a user-space listener. The stricter answer of
   the filters already loaded (EPERM) must win, so mount fails at once and never succeeds. */
static void user_notify_on_mount(void) {
    pid_t pid = fork();
    if (pid == 0) {
        alarm(2);
        struct sock_filter notify[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mount, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {4, notify};
        long listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                                SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
        printf("user-notify filter on mount: listener %ld\n", listener);
        fflush(stdout);
        _exit(mount("none", "/tmp", "tmpfs", 0, NULL) == 0 ? 42 : 0);
    }
    int status;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 42) {
        puts("ESCAPED mount succeeded under a user-notify filter");
        escaped = 1;
    }
}

int main(void) {
    user_notify_on_mount();
    struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {1, allow};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0) puts("stacked an allow-all filter");
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) == 0)
        puts("stacked an allow-all filter with TSYNC");
    if (prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0 || prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
        puts("ESCAPED no_new_privs is off");
        escaped = 1;
    }
    if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != 2) { puts("ESCAPED the filter is gone"); escaped = 1; }
    if (mount("none", "/tmp", "tmpfs", 0, NULL) == 0) { puts("ESCAPED mount after stacking"); escaped = 1; }
    if (syscall(SYS_unshare, 0x10000000) == 0) { puts("ESCAPED unshare(NEWUSER) after stacking"); escaped = 1; }
    printf("mount and unshare after stacking: %s\n", strerror(errno));
    if (!escaped) puts("HELD");
    return 0;
}
