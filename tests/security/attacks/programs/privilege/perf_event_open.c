// summary: open a perf event on this process, on every CPU and on the kernel (CVE-2013-2094; side
//    channels)
#define _GNU_SOURCE
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    int escaped = 0;
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.exclude_kernel = 1;
    struct { pid_t pid; int cpu; } targets[] = {{0, -1}, {-1, 0}, {1, -1}};
    for (int i = 0; i < 3; i++) {
        long fd = syscall(SYS_perf_event_open, &attr, targets[i].pid, targets[i].cpu, -1, 0);
        if (fd >= 0) {
            printf("ESCAPED perf_event_open(pid %d, cpu %d) gave fd %ld\n", targets[i].pid,
                   targets[i].cpu, fd);
            escaped = 1;
        } else {
            printf("perf_event_open(pid %d, cpu %d): %s\n", targets[i].pid, targets[i].cpu,
                   strerror(errno));
        }
    }
    if (!escaped) puts("HELD");
    return 0;
}
