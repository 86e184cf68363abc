// summary: set the host's clock: settimeofday, clock_settime, adjtimex, clock_adjtime (to the
//    current time)
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

static int escaped;

static void check(const char *what, long r) {
    if (r >= 0) { printf("ESCAPED %s returned %ld\n", what, r); escaped = 1; }
    else printf("%s: %s\n", what, strerror(errno));
}

int main(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    check("settimeofday(now)", syscall(SYS_settimeofday, &tv, NULL));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    check("clock_settime(REALTIME, now)", syscall(SYS_clock_settime, CLOCK_REALTIME, &ts));
    struct timex tx;
    memset(&tx, 0, sizeof tx);
    tx.modes = ADJ_OFFSET_SINGLESHOT; /* offset 0: no change, but it is a write */
    check("adjtimex(ADJ_OFFSET_SINGLESHOT 0)", syscall(SYS_adjtimex, &tx));
    memset(&tx, 0, sizeof tx);
    tx.modes = ADJ_OFFSET_SINGLESHOT;
    check("clock_adjtime(REALTIME)", syscall(SYS_clock_adjtime, CLOCK_REALTIME, &tx));
    if (!escaped) puts("HELD");
    return 0;
}
