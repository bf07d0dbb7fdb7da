/* fork.c: a child made by fork() cannot undo its parent's attach, and a fork while another
 * thread is inside the library does not leave the child deadlocked (run by tests/ffi.rs).
 *
 * usage: fork KEY CHILDREN      (RSHM_PORT names the node)
 *
 * The parent creates and attaches the segment, then forks CHILDREN children while a second
 * thread attaches and detaches in a loop (so that forks land while it holds the library's
 * table lock). Each child (with alarm(20) as its bound) checks that rshmdt of the inherited
 * address is EINVAL, that the inherited mapping still reads, and that it can attach, write,
 * rshmChanged and detach on its own. Then the parent marks the segment for removal: since it
 * is still attached, the segment must still be there, and its rshmChanged must succeed.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "rshm.h"

static int id;
static volatile int stop;

static void *churn(void *arg)
{
    (void)arg;
    while (!stop) {
        void *a = rshmat(id, NULL);
        if (a == (void *)-1 || rshmdt(id, a) != 0) {
            printf("churn: %s\n", rshm_error());
            exit(1);
        }
    }
    return NULL;
}

static int child(void *inherited)
{
    alarm(20); /* a deadlocked child dies of SIGALRM instead of hanging the test */
    if (rshmdt(id, inherited) != -1 || errno != EINVAL) {
        printf("child: rshmdt of the parent's attach did not fail with EINVAL\n");
        return 1;
    }
    if (strcmp(inherited, "parent") != 0) {
        printf("child: the inherited mapping reads '%.16s'\n", (char *)inherited);
        return 1;
    }
    void *mine = rshmat(id, NULL);
    if (mine == (void *)-1) {
        printf("child: rshmat: %s\n", rshm_error());
        return 1;
    }
    if (rshmChanged(id) != 0 || rshmdt(id, mine) != 0) {
        printf("child: %s\n", rshm_error());
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: fork KEY CHILDREN\n");
        return 2;
    }
    key_t key = (key_t)strtol(argv[1], NULL, 0);
    int children = atoi(argv[2]);
    id = rshmget(key, 4096);
    void *a = id == -1 ? (void *)-1 : rshmat(id, NULL);
    if (a == (void *)-1) {
        fprintf(stderr, "fork: %s\n", rshm_error());
        return 1;
    }
    strcpy(a, "parent");
    pthread_t t;
    pthread_create(&t, NULL, churn, NULL);
    int failed = 0;
    for (int i = 0; i < children; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0)
            _exit(child(a));
        int status;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            printf("child %d: %s %d\n", i, WIFEXITED(status) ? "exit" : "signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            failed++;
        }
    }
    stop = 1;
    pthread_join(t, NULL);
    /* Still attached here: marked for removal, not destroyed; a change still goes out. */
    if (rshmctl(id, IPC_RMID) != 0 || rshmChanged(id) != 0 || strcmp(a, "parent") != 0) {
        printf("parent: the segment went while attached: %s\n", rshm_error());
        failed++;
    }
    if (rshmdt(id, a) != 0) {
        printf("parent: rshmdt: %s\n", rshm_error());
        failed++;
    }
    printf("%d children, %d failures\n", children, failed);
    return failed ? 1 : 0;
}
