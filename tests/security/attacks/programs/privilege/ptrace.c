// summary: ptrace and its cousins against the init, a sibling and a child: attach, seize, traceme,
//    process_vm_readv/writev, pidfd_getfd, kcmp
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static int escaped;

static void check(const char *what, long r) {
    if (r >= 0) {
        printf("ESCAPED %s returned %ld\n", what, r);
        escaped = 1;
    } else {
        printf("%s: %s\n", what, strerror(errno));
    }
}

int main(void) {
    char buffer[16] = {0};
    pid_t child = fork();
    if (child == 0) { pause(); _exit(0); }
    pid_t targets[] = {1, child};
    for (int i = 0; i < 2; i++) {
        pid_t t = targets[i];
        char what[64];
        snprintf(what, sizeof what, "PTRACE_ATTACH %d", t);
        check(what, ptrace(PTRACE_ATTACH, t, 0, 0));
        snprintf(what, sizeof what, "PTRACE_SEIZE %d", t);
        check(what, ptrace(PTRACE_SEIZE, t, 0, 0));
        struct iovec local = {buffer, sizeof buffer}, remote = {(void *)0x400000, sizeof buffer};
        snprintf(what, sizeof what, "process_vm_readv %d", t);
        check(what, process_vm_readv(t, &local, 1, &remote, 1, 0));
        snprintf(what, sizeof what, "process_vm_writev %d", t);
        check(what, process_vm_writev(t, &local, 1, &remote, 1, 0));
        long pidfd = syscall(SYS_pidfd_open, t, 0);
        snprintf(what, sizeof what, "pidfd_getfd %d fd 0", t);
        check(what, pidfd < 0 ? -1 : syscall(SYS_pidfd_getfd, pidfd, 0, 0));
        snprintf(what, sizeof what, "kcmp %d", t);
        check(what, syscall(SYS_kcmp, getpid(), t, 0 /* KCMP_FILE */, 0, 0));
    }
    pid_t tracee = fork();
    if (tracee == 0) _exit(ptrace(PTRACE_TRACEME, 0, 0, 0) == 0 ? 42 : 0);
    int status;
    waitpid(tracee, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 42) {
        puts("ESCAPED PTRACE_TRACEME");
        escaped = 1;
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    if (!escaped) puts("HELD");
    return 0;
}
