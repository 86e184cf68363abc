// summary: new namespaces every way: unshare, clone and clone3 with each CLONE_NEW* flag, setns
//    into the init's
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x80
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static int escaped;

struct flag { const char *name; long value; };
static const struct flag flags[] = {
    {"NEWUSER", CLONE_NEWUSER}, {"NEWNS", CLONE_NEWNS},   {"NEWPID", CLONE_NEWPID},
    {"NEWNET", CLONE_NEWNET},   {"NEWUTS", CLONE_NEWUTS}, {"NEWIPC", CLONE_NEWIPC},
    {"NEWCGROUP", CLONE_NEWCGROUP}, {"NEWTIME", CLONE_NEWTIME},
    {"NEWUSER|NEWNET", CLONE_NEWUSER | CLONE_NEWNET},
};

static void got_through(const char *what, const char *flag) {
    printf("ESCAPED %s(%s)\n", what, flag);
    escaped = 1;
}

int main(void) {
    for (unsigned i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        pid_t pid = fork();
        if (pid == 0) _exit(unshare(flags[i].value) == 0 ? 42 : 0);
        int status;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 42) got_through("unshare", flags[i].name);

        long r = syscall(SYS_clone, flags[i].value | SIGCHLD, 0, 0, 0, 0);
        if (r == 0) _exit(0);
        if (r > 0) { waitpid(r, NULL, 0); got_through("clone", flags[i].name); }

        struct { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; } args;
        memset(&args, 0, sizeof args);
        args.flags = flags[i].value;
        args.exit_signal = SIGCHLD;
        r = syscall(SYS_clone3, &args, sizeof args);
        if (r == 0) _exit(0);
        if (r > 0) { waitpid(r, NULL, 0); got_through("clone3", flags[i].name); }
    }
    const char *ns[] = {"mnt", "pid", "net", "user", "uts", "ipc", "cgroup", "time"};
    for (unsigned i = 0; i < 8; i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/1/ns/%s", ns[i]);
        int fd = open(path, O_RDONLY);
        if (fd >= 0 && setns(fd, 0) == 0) got_through("setns /proc/1/ns", ns[i]);
        snprintf(path, sizeof path, "/proc/self/ns/%s", ns[i]);
        fd = open(path, O_RDONLY);
        if (fd >= 0 && setns(fd, 0) == 0) got_through("setns /proc/self/ns", ns[i]);
    }
    long pidfd = syscall(SYS_pidfd_open, 1, 0);
    if (pidfd >= 0 && setns(pidfd, CLONE_NEWNS | CLONE_NEWNET) == 0) got_through("setns", "pidfd of init");
    if (!escaped) puts("HELD");
    return 0;
}
