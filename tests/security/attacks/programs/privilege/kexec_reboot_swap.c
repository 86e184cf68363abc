// summary: kexec_load, kexec_file_load, reboot, swapon, swapoff, acct (each with arguments the
//    kernel would reject)
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int escaped;

/* EPERM (or ENOSYS) is a refusal; anything else means the call was looked at. */
static void check(const char *what, long r) {
    if (r == 0 || (errno != EPERM && errno != ENOSYS)) {
        printf("ESCAPED %s reached the kernel: %ld %s\n", what, r, strerror(errno));
        escaped = 1;
    } else {
        printf("%s: %s\n", what, strerror(errno));
    }
}

int main(void) {
    check("kexec_load", syscall(SYS_kexec_load, 0, 1000, NULL, 0xDEAD0000UL));
    check("kexec_file_load", syscall(SYS_kexec_file_load, -1, -1, 0, "", 0xDEAD0000UL));
    check("reboot(bad magic)", syscall(SYS_reboot, 0, 0, 0, NULL));
    check("swapon", syscall(SYS_swapon, "/nonexistent/stockade", 0));
    check("swapoff", syscall(SYS_swapoff, "/nonexistent/stockade"));
    check("acct", syscall(SYS_acct, "/nonexistent/stockade"));
    if (!escaped) puts("HELD");
    return 0;
}
