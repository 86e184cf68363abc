// summary: syscalls through other ABIs the filter might not cover: x32 (nr | 0x40000000) and i386
//    (int 0x80)
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int escaped;

/* Each probe runs in a child: the filter must kill it (SIGSYS) before the call does anything. */
static void probe(const char *what, int (*call)(void)) {
    pid_t pid = fork();
    if (pid == 0) _exit(call());
    int status;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
        printf("%s: killed by signal %d\n", what, WTERMSIG(status));
    } else if (WEXITSTATUS(status) == 0) {
        printf("ESCAPED %s: the call ran\n", what);
        escaped = 1;
    } else {
        printf("%s: refused (exit %d)\n", what, WEXITSTATUS(status));
    }
}

#if defined(__x86_64__)
static int x32_getpid(void) { return syscall(0x40000000L | SYS_getpid) > 0 ? 0 : 2; }
static int x32_mount(void) { return syscall(0x40000000L | SYS_mount, "none", "/tmp", "tmpfs", 0, 0) == 0 ? 0 : 2; }
static int i386_getpid(void) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
    return r > 0 ? 0 : 2;
}
static int i386_socketcall(void) { /* socketcall(SYS_SOCKET, [AF_PACKET, SOCK_RAW, 0]) */
    static unsigned int args[3] = {17, 3, 0};
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(102L), "b"(1L), "c"(args) : "memory");
    return r >= 0 ? 0 : 2;
}
#endif

int main(void) {
#if defined(__x86_64__)
    probe("x32 getpid", x32_getpid);
    probe("x32 mount", x32_mount);
    probe("i386 int 0x80 getpid", i386_getpid);
    probe("i386 socketcall(AF_PACKET)", i386_socketcall);
#else
    puts("no foreign ABI on this architecture");
#endif
    if (!escaped) puts("HELD");
    return 0;
}
