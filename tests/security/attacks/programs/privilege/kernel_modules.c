// summary: load and unload kernel modules: init_module, finit_module, delete_module (with invalid
//    images)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int escaped;

/* Refused means EPERM (the filter, or a missing capability). Any other answer means the
   kernel went on to look at the (deliberately invalid) module: the call got through. */
static void check(const char *what, long r) {
    if (r == 0 || errno != EPERM) {
        printf("ESCAPED %s reached the kernel: %ld %s\n", what, r, strerror(errno));
        escaped = 1;
    } else {
        printf("%s: %s\n", what, strerror(errno));
    }
}

int main(void) {
    static const char image[64] = "\x7f" "ELF not a module";
    check("init_module", syscall(SYS_init_module, image, sizeof image, ""));
    int fd = open("/etc/ld.so.cache", O_RDONLY);
    check("finit_module", syscall(SYS_finit_module, fd, "", 0));
    check("delete_module", syscall(SYS_delete_module, "stockade_no_such_module", O_NONBLOCK));
    if (!escaped) puts("HELD");
    return 0;
}
