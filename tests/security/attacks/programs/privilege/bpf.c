// summary: load an eBPF program and create a map (verifier bugs: CVE-2021-3490, CVE-2021-31440)
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    int escaped = 0;
    struct bpf_insn prog[] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0}, /* r0 = 0 */
        {.code = BPF_JMP | BPF_EXIT},
    };
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insn_cnt = 2;
    attr.insns = (uint64_t)(uintptr_t)prog;
    attr.license = (uint64_t)(uintptr_t)"GPL";
    long fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
    if (fd >= 0) { printf("ESCAPED BPF_PROG_LOAD gave fd %ld\n", fd); escaped = 1; }
    else printf("BPF_PROG_LOAD: %s\n", strerror(errno));
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 8;
    attr.max_entries = 1;
    fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    if (fd >= 0) { printf("ESCAPED BPF_MAP_CREATE gave fd %ld\n", fd); escaped = 1; }
    else printf("BPF_MAP_CREATE: %s\n", strerror(errno));
    if (!escaped) puts("HELD");
    return 0;
}
