/* bad_addr.c: the seed's plan for rshmat, "the server calls shmat and returns the address",
 * tried between two processes on ONE machine. It fails even there.
 *
 * The parent forks a child, then creates a segment, attaches it, writes "hello" into it and
 * sends the child the ADDRESS it got. The child dereferences that address: in the child's
 * address space nothing is mapped there, so the child dies of SIGSEGV. (Had something else
 * been mapped there, it would silently read the wrong memory: worse.)
 *
 *     $ cc -o bad_addr lab/05-rshm/bad_addr.c && ./bad_addr
 *     parent: segment 32790 attached at 0x7f1c2b6f0000, wrote "hello"
 *     child: reading the parent's address 0x7f1c2b6f0000 ...
 *     parent: child killed by signal 11 (Segmentation fault)
 *
 * Compare good_addr.c, which sends the shmid instead.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    int fd[2];
    if (pipe(fd) == -1) {
        perror("pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid == -1) {
        perror("fork");
        return 1;
    }
    if (pid == 0) { /* the child: P2, which only gets a number */
        void *addr;
        close(fd[1]);
        if (read(fd[0], &addr, sizeof addr) != sizeof addr)
            _exit(1);
        printf("child: reading the parent's address %p ...\n", addr);
        fflush(stdout);
        printf("child: got \"%s\"\n", (char *)addr); /* BAD: not mapped in this process */
        _exit(0);
    }
    close(fd[0]);
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (id == -1) {
        perror("shmget");
        return 1;
    }
    char *mem = shmat(id, NULL, 0);
    shmctl(id, IPC_RMID, NULL); /* marked now: gone when we detach, whatever happens */
    if (mem == (void *)-1) {
        perror("shmat");
        return 1;
    }
    strcpy(mem, "hello");
    printf("parent: segment %d attached at %p, wrote \"hello\"\n", id, (void *)mem);
    fflush(stdout);
    if (write(fd[1], &mem, sizeof mem) != sizeof mem) /* BAD: an address, not an id */
        perror("write");
    int status;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status))
        printf("parent: child killed by signal %d (%s)\n", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        printf("parent: child exited with %d\n", WEXITSTATUS(status));
    shmdt(mem);
    return 0;
}
