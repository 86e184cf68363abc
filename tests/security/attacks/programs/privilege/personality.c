// summary: personality flags that weaken the process (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC,
//    MMAP_PAGE_ZERO, 32-bit)
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>

int main(void) {
    int escaped = 0;
    unsigned long flags[] = {ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT,
                             ADDR_LIMIT_32BIT, SHORT_INODE, STICKY_TIMEOUTS, PER_BSD, PER_SVR4};
    for (unsigned i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        int before = personality(0xffffffff);
        int r = personality(flags[i]);
        int after = personality(0xffffffff);
        if (r != -1 && after == (int)flags[i] && after != before) {
            printf("ESCAPED personality(%#lx) took effect\n", flags[i]);
            escaped = 1;
        } else {
            printf("personality(%#lx): %s\n", flags[i], r == -1 ? strerror(errno) : "no effect");
        }
        personality(before);
    }
    if (!escaped) puts("HELD");
    return 0;
}
