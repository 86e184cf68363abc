// summary: get a userfaultfd (widens kernel races) through the syscall and through /dev/userfaultfd
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    int escaped = 0;
    long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) { printf("ESCAPED userfaultfd gave fd %ld\n", fd); escaped = 1; }
    else printf("userfaultfd: %s\n", strerror(errno));
    fd = open("/dev/userfaultfd", O_RDWR);
    if (fd >= 0) { printf("ESCAPED opened /dev/userfaultfd\n"); escaped = 1; }
    else printf("/dev/userfaultfd: %s\n", strerror(errno));
    if (!escaped) puts("HELD");
    return 0;
}
