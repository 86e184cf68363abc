// summary: set up an io_uring and use it to make a socket without socket(2) (IORING_OP_SOCKET,
//    AF_VSOCK)
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

int main(void) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    long ring = syscall(SYS_io_uring_setup, 4, &params);
    if (ring < 0) {
        printf("io_uring_setup: %s\n", strerror(errno));
        long r = syscall(SYS_io_uring_enter, 0, 1, 0, 0, NULL, 0);
        if (r >= 0) { puts("ESCAPED io_uring_enter on fd 0"); return 0; }
        r = syscall(SYS_io_uring_register, 0, 0, NULL, 0);
        if (r >= 0) { puts("ESCAPED io_uring_register on fd 0"); return 0; }
        puts("HELD");
        return 0;
    }
    printf("ESCAPED io_uring_setup gave fd %ld\n", ring);
    /* go on and show what it buys: a socket the filter never saw */
    size_t sq_size = params.sq_off.array + params.sq_entries * sizeof(unsigned);
    char *sq = mmap(NULL, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED, ring, IORING_OFF_SQ_RING);
    struct io_uring_sqe *sqes = mmap(NULL, params.sq_entries * sizeof(struct io_uring_sqe),
                                     PROT_READ | PROT_WRITE, MAP_SHARED, ring, IORING_OFF_SQES);
    if (sq == MAP_FAILED || sqes == MAP_FAILED) return 0;
    memset(&sqes[0], 0, sizeof sqes[0]);
    sqes[0].opcode = 45; /* IORING_OP_SOCKET */
    sqes[0].fd = AF_VSOCK;
    sqes[0].off = SOCK_STREAM;
    unsigned *array = (unsigned *)(sq + params.sq_off.array);
    unsigned *tail = (unsigned *)(sq + params.sq_off.tail);
    array[0] = 0;
    __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
    long r = syscall(SYS_io_uring_enter, ring, 1, 1, 1 /* GETEVENTS */, NULL, 0);
    printf("ESCAPED io_uring_enter submitted IORING_OP_SOCKET(AF_VSOCK): %ld\n", r);
    return 0;
}
