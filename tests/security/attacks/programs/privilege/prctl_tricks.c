// summary: prctl tricks: PR_SET_MM (rewrite the memory map), make the process dumpable to let
//    others in, child subreaper, SECUREBITS, speculation controls
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef PR_SET_MM
#define PR_SET_MM 35
#endif
#ifndef PR_SET_SECUREBITS
#define PR_SET_SECUREBITS 28
#endif

static int escaped;

static void refused(const char *what, int r) {
    if (r == 0) { printf("ESCAPED %s\n", what); escaped = 1; }
    else printf("%s: %s\n", what, strerror(errno));
}

int main(void) {
    static char fake[64];
    refused("PR_SET_MM(START_BRK)", prctl(PR_SET_MM, 6 /* PR_SET_MM_START_BRK */, (unsigned long)fake, 0, 0));
    refused("PR_SET_MM(EXE_FILE)", prctl(PR_SET_MM, 13 /* PR_SET_MM_EXE_FILE */, 0, 0, 0));
    refused("PR_SET_SECUREBITS(0)", prctl(PR_SET_SECUREBITS, 0, 0, 0, 0));
    /* allowed and harmless: shown to be so */
    printf("PR_SET_DUMPABLE(1): %d, PR_SET_CHILD_SUBREAPER: %d\n",
           prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0));
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) { puts("ESCAPED no_new_privs is off"); escaped = 1; }
    if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != 2) { puts("ESCAPED no seccomp filter"); escaped = 1; }
    if (!escaped) puts("HELD");
    return 0;
}
