// summary: the kernel keyrings: add_key, keyctl, request_key (CVE-2016-0728; state shared across
//    runs)
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KEY_SPEC_SESSION_KEYRING -3
#define KEY_SPEC_USER_KEYRING -4
#define KEYCTL_GET_KEYRING_ID 0
#define KEYCTL_JOIN_SESSION_KEYRING 1
#define KEYCTL_DESCRIBE 6

static int escaped;

static void check(const char *what, long r) {
    if (r >= 0) { printf("ESCAPED %s returned %ld\n", what, r); escaped = 1; }
    else printf("%s: %s\n", what, strerror(errno));
}

int main(void) {
    check("add_key(user, session)", syscall(SYS_add_key, "user", "stockade", "x", 1, KEY_SPEC_SESSION_KEYRING));
    check("add_key(user, user keyring)", syscall(SYS_add_key, "user", "stockade", "x", 1, KEY_SPEC_USER_KEYRING));
    check("keyctl(GET_KEYRING_ID, user)", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0));
    check("keyctl(JOIN_SESSION_KEYRING)", syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, "stockade"));
    check("request_key(user)", syscall(SYS_request_key, "user", "stockade", NULL, KEY_SPEC_SESSION_KEYRING));
    FILE *keys = fopen("/proc/keys", "r");
    if (keys) {
        char line[256];
        while (fgets(line, sizeof line, keys)) printf("/proc/keys: %s", line);
        fclose(keys);
    }
    if (!escaped) puts("HELD");
    return 0;
}
