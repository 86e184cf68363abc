// summary: become root or regain capabilities: setuid(0), setresuid, setgroups, capset, ambient
//    raise, keepcaps
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int escaped;

static void check(const char *what, long r) {
    if (r == 0) { printf("ESCAPED %s\n", what); escaped = 1; }
    else printf("%s: %s\n", what, strerror(errno));
}

int main(void) {
    check("setuid(0)", setuid(0));
    check("setresuid(0,0,0)", setresuid(0, 0, 0));
    check("setgid(0)", setgid(0));
    gid_t zero = 0;
    check("setgroups([0])", setgroups(1, &zero));
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0xff, sizeof data);
    check("capset(all)", syscall(SYS_capset, &header, data));
    check("PR_CAP_AMBIENT_RAISE(CAP_SYS_ADMIN)", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, 0, 0));
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1) {
            printf("ESCAPED capability %d is in the bounding set\n", cap);
            escaped = 1;
        }
    }
    memset(data, 0, sizeof data);
    syscall(SYS_capget, &header, data);
    for (int i = 0; i < 2; i++) {
        if (data[i].effective || data[i].permitted || data[i].inheritable) {
            printf("ESCAPED capabilities held: %#x %#x %#x\n", data[i].effective, data[i].permitted,
                   data[i].inheritable);
            escaped = 1;
        }
    }
    if (getuid() == 0 || geteuid() == 0 || getgid() == 0 || getegid() == 0) {
        puts("ESCAPED running as root");
        escaped = 1;
    }
    if (!escaped) puts("HELD");
    return 0;
}
