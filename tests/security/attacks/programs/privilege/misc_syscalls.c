// summary: the rest of the kernel surface: syslog, iopl, ioperm, modify_ldt, sethostname,
//    setdomainname, quotactl, vhangup, fanotify_init, lookup_dcookie, nfsservctl
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int escaped;

static void check(const char *what, long r) {
    if (r >= 0) { printf("ESCAPED %s returned %ld\n", what, r); escaped = 1; }
    else printf("%s: %s\n", what, strerror(errno));
}

int main(void) {
    char buffer[256];
    check("syslog(READ_ALL)", syscall(SYS_syslog, 3, buffer, sizeof buffer));
    check("syslog(SIZE_BUFFER)", syscall(SYS_syslog, 10, NULL, 0));
#if defined(__x86_64__)
    check("iopl(3)", syscall(SYS_iopl, 3));
    check("ioperm(0x80)", syscall(SYS_ioperm, 0x80, 1, 1));
    check("modify_ldt(read)", syscall(SYS_modify_ldt, 0, buffer, sizeof buffer));
#endif
    check("sethostname", syscall(SYS_sethostname, "pwned", 5));
    check("setdomainname", syscall(SYS_setdomainname, "pwned", 5));
    check("quotactl(Q_SYNC)", syscall(SYS_quotactl, 0x800001, NULL, 0, NULL));
    check("vhangup", syscall(SYS_vhangup));
    check("fanotify_init", syscall(SYS_fanotify_init, 0, 0));
    check("lookup_dcookie", syscall(SYS_lookup_dcookie, 0, buffer, sizeof buffer));
    if (!escaped) puts("HELD");
    return 0;
}
