/* good_addr.c: what rshmat does instead: hand over the segment's ID, and let each process
 * attach it in its own address space.
 *
 * Same as bad_addr.c, but the parent sends the shmid. The child calls shmat itself: the
 * kernel maps the same physical pages into the child's own address space, and the child
 * reads "hello". (The number may even equal the parent's, since a forked child starts with
 * the parent's layout; it is still a mapping the child made. In bad_addr.c the same number
 * pointed at nothing.) In RSHM the server returns the replica's shmid and
 * the API (src/rshm/api.rs, Node::rshmat) calls shmat in the caller's process.
 *
 *     $ cc -o good_addr lab/05-rshm/good_addr.c && ./good_addr
 *     parent: segment 32791 attached at 0x7f6e1a1ba000, wrote "hello"
 *     child: attached segment 32791 at 0x7f6e1a1ba000, got "hello"
 *     parent: child exited with 0
 */
#include <stdio.h>
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
    if (pid == 0) { /* the child: P2, which gets the id and attaches by itself */
        int id;
        close(fd[1]);
        if (read(fd[0], &id, sizeof id) != sizeof id)
            _exit(1);
        char *mem = shmat(id, NULL, SHM_RDONLY); /* GOOD: our own mapping */
        if (mem == (void *)-1) {
            perror("child: shmat");
            _exit(1);
        }
        printf("child: attached segment %d at %p, got \"%s\"\n", id, (void *)mem, mem);
        fflush(stdout);
        shmdt(mem);
        _exit(0);
    }
    close(fd[0]);
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (id == -1) {
        perror("shmget");
        return 1;
    }
    char *mem = shmat(id, NULL, 0);
    if (mem == (void *)-1) {
        perror("shmat");
        shmctl(id, IPC_RMID, NULL);
        return 1;
    }
    strcpy(mem, "hello");
    printf("parent: segment %d attached at %p, wrote \"hello\"\n", id, (void *)mem);
    fflush(stdout);
    if (write(fd[1], &id, sizeof id) != sizeof id) /* GOOD: the id means the same everywhere */
        perror("write");
    int status;
    waitpid(pid, &status, 0);
    printf("parent: child exited with %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    shmdt(mem);
    shmctl(id, IPC_RMID, NULL); /* the creator removes it, after the child is done */
    return 0;
}
