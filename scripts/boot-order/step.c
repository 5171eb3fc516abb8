// Single-steps a command, every thread of it, and writes each distinct instruction address inside
// [LO, HI) to OUT, one hexadecimal address a line, in the order they first ran.
// Used by scripts/boot-order.sh; the guest's own code runs inside KVM_RUN and is not seen.
//
// Usage: step LO HI OUT PROGRAM [ARG...]
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s LO HI OUT PROGRAM [ARG...]\n", argv[0]);
        return 2;
    }
    uint64_t lo = strtoull(argv[1], 0, 0), hi = strtoull(argv[2], 0, 0);
    FILE *out = fopen(argv[3], "w");
    uint8_t *seen = calloc(hi - lo, 1);
    if (!out || !seen || hi <= lo) {
        perror("step");
        return 1;
    }
    pid_t child = fork();
    if (child == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        execv(argv[4], argv + 4);
        _exit(127);
    }
    int st, status = 0;
    waitpid(child, &st, 0);
    ptrace(PTRACE_SETOPTIONS, child, 0, PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL);
    ptrace(PTRACE_SINGLESTEP, child, 0, 0);
    int live = 1;
    while (live > 0) {
        pid_t t = waitpid(-1, &st, __WALL);
        if (t < 0)
            break;
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            if (t == child)
                status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            live--;
            continue;
        }
        int sig = WSTOPSIG(st), event = st >> 16, deliver = 0;
        if (event == PTRACE_EVENT_CLONE) {
            live++;
        } else if (sig == SIGTRAP) {
            struct user_regs_struct r;
            if (ptrace(PTRACE_GETREGS, t, 0, &r) == 0 && r.rip >= lo && r.rip < hi && !seen[r.rip - lo]) {
                seen[r.rip - lo] = 1;
                fprintf(out, "%llx\n", (unsigned long long)r.rip);
            }
        } else if (sig != SIGSTOP) {
            deliver = sig; // a new thread's first stop is SIGSTOP: not the program's
        }
        ptrace(PTRACE_SINGLESTEP, t, 0, deliver);
    }
    fclose(out);
    return status;
}
