// summary: spin the CPU in 16 threads and 4 processes, against a 1 s CPU-time limit for the whole
//    tree
// limits: cpu_time=1 timeout=20
// expect: timeout
// verdict: none
// check: r.cpu_time < 4 and r.wall_time < 10 * T
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static void *spin(void *arg) {
    (void)arg;
    for (volatile unsigned long i = 0;; i++) {
    }
    return NULL;
}

int main(void) {
    for (int i = 0; i < 3; i++)
        if (fork() == 0) break;
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) pthread_create(&threads[i], NULL, spin, NULL);
    sleep(30);
    puts("ESCAPED spun for 30 s");
    return 0;
}
