// Single-steps a command and the process tree it starts, every thread of it, and writes each
// distinct instruction address inside [LO, HI) to OUT, one a line, in the order they first ran:
// "ADDR 1" for code run by the command's own program (and its forks and threads), "ADDR 2" for
// code run by a descendant that executed the same program again (unik's container monitor,
// which `unik create` re-executes); an address run by both is written once for each.
// Only tasks running PROGRAM count: one that executes another program is let go (it maps other
// code, maybe at the same addresses). Used by scripts/boot-order.sh; the guest's own code runs
// inside KVM_RUN and is not seen.
//
// The command's exit status is step's. With -b, step returns as soon as the command itself has
// ended and a tracer left behind follows the rest of the tree (a monitor outlives `unik create`);
// that tracer holds an exclusive flock(2) on OUT until OUT is complete, so `flock OUT true` waits
// for it. It is the subreaper of the tree, so the orphaned monitor is reaped.
//
// Usage: step [-b] LO HI OUT PROGRAM [ARG...]
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PID (1 << 22) // /proc/sys/kernel/pid_max's ceiling

// Per task: 0 not traced (never seen, ended or let go); 1 traced, not yet running PROGRAM (the
// command before its exec); 2 running PROGRAM, the command's own; 3 running PROGRAM executed again.
static uint8_t state[MAX_PID];
static struct stat program;

// Whether task T runs PROGRAM.
static int runs_program(pid_t t) {
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d/exe", t);
    // stat follows the link to the file itself, whatever mount namespace the task is in.
    return stat(path, &st) == 0 && st.st_dev == program.st_dev && st.st_ino == program.st_ino;
}

// The state of a new task whose first stop came before its parent's fork or clone event: its
// thread group's, else its parent's.
static uint8_t inherited(pid_t t) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", t);
    FILE *f = fopen(path, "re");
    int tgid = 0, ppid = 0;
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "Tgid: %d", &tgid);
        sscanf(line, "PPid: %d", &ppid);
    }
    if (f)
        fclose(f);
    if (tgid > 0 && tgid != t && tgid < MAX_PID && state[tgid])
        return state[tgid];
    if (ppid > 0 && ppid < MAX_PID && state[ppid])
        return state[ppid];
    return runs_program(t) ? 2 : 1;
}

int main(int argc, char **argv) {
    int background = argc > 1 && strcmp(argv[1], "-b") == 0;
    argv += background;
    argc -= background;
    if (argc < 5) {
        fprintf(stderr, "usage: step [-b] LO HI OUT PROGRAM [ARG...]\n");
        return 2;
    }
    uint64_t lo = strtoull(argv[1], 0, 0), hi = strtoull(argv[2], 0, 0);
    FILE *out = fopen(argv[3], "we");
    uint8_t *seen = calloc(hi - lo, 1); // bit 0: run by the command, bit 1: by a re-exec
    if (!out || !seen || hi <= lo || stat(argv[4], &program) != 0) {
        perror("step");
        return 1;
    }
    if (flock(fileno(out), LOCK_EX) != 0) {
        perror("step: flock");
        return 1;
    }
    // -b: this process only waits for the command's status, written by the tracer to `done`.
    int done[2] = {-1, -1};
    if (background) {
        if (pipe2(done, O_CLOEXEC) != 0) {
            perror("step: pipe");
            return 1;
        }
        pid_t tracer = fork();
        if (tracer < 0) {
            perror("step: fork");
            return 1;
        }
        if (tracer > 0) {
            close(done[1]);
            uint8_t status;
            if (read(done[0], &status, 1) != 1) {
                fprintf(stderr, "step: the tracer ended before the command\n");
                return 1;
            }
            return status;
        }
        close(done[0]);
    }
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    pid_t child = fork();
    if (child == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        execv(argv[4], argv + 4);
        _exit(127);
    }
    int st, status = 0;
    waitpid(child, &st, 0);
    ptrace(PTRACE_SETOPTIONS, child, 0,
           PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC |
               PTRACE_O_EXITKILL);
    state[child] = 1;
    int live = 1;
    ptrace(PTRACE_SINGLESTEP, child, 0, 0);
    while (live > 0) {
        pid_t t = waitpid(-1, &st, __WALL);
        if (t < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (t >= MAX_PID)
            continue;
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            if (t == child) {
                status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                if (done[1] >= 0) {
                    uint8_t s = status;
                    if (write(done[1], &s, 1) != 1)
                        perror("step: write");
                    close(done[1]);
                    done[1] = -1;
                }
            }
            if (state[t]) { // else an orphan we let go, reaped as the subreaper
                state[t] = 0;
                live--;
            }
            continue;
        }
        int sig = WSTOPSIG(st), event = st >> 16, deliver = 0;
        if (!state[t]) {
            state[t] = inherited(t);
            live++;
        }
        if (event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK || event == PTRACE_EVENT_CLONE) {
            unsigned long msg;
            if (ptrace(PTRACE_GETEVENTMSG, t, 0, &msg) == 0 && msg < MAX_PID && !state[msg]) {
                state[msg] = state[t]; // it runs what its parent runs
                live++;
            }
        } else if (event == PTRACE_EVENT_EXEC) {
            if (!runs_program(t)) {
                // Another program: let it run untraced (its children too).
                ptrace(PTRACE_DETACH, t, 0, 0);
                state[t] = 0;
                live--;
                continue;
            }
            state[t] = state[t] < 3 ? state[t] + 1 : 3;
        } else if (event == 0 && sig == SIGTRAP) {
            struct user_regs_struct r;
            int bit = state[t] == 3 ? 2 : 1;
            if (state[t] >= 2 && ptrace(PTRACE_GETREGS, t, 0, &r) == 0 && r.rip >= lo && r.rip < hi &&
                !(seen[r.rip - lo] & bit)) {
                seen[r.rip - lo] |= bit;
                fprintf(out, "%llx %d\n", (unsigned long long)r.rip, bit);
            }
        } else if (event == 0 && sig != SIGSTOP) {
            deliver = sig; // a new task's first stop is SIGSTOP: not the program's
        }
        ptrace(PTRACE_SINGLESTEP, t, 0, deliver);
    }
    fclose(out); // and with it the lock
    return status;
}
