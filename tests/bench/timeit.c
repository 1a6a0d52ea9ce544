/* timeit.c - tiny wall-clock timer for the lunas benchmarks (tests/bench/run.sh).
 *
 * usage: timeit [-n RUNS] [-w WARMUP] [-t TIMEOUT_S] [-o SAMPLES] [-s OUT] [-E ERR] -- CMD [ARG...]
 *
 * Runs CMD WARMUP times untimed, then RUNS times timed, one after the other, each via
 * fork()+execve() (no shell; CMD is looked up in PATH once, before any run). stdin, stdout
 * and stderr of CMD are /dev/null unless -s / -E name files to append them to (-s: timed runs
 * only; -E: warm-up runs too, so a failure always leaves its message).
 * Wall time of a run = CLOCK_MONOTONIC from just before fork() to just after wait4() returns.
 * Peak RSS of a run = ru_maxrss (KiB) from wait4(): the kernel reports the max over the child
 * and every descendant it waited for, so it is the peak of the tool's process tree, payload included.
 *
 * Prints one line:  median_ms p10_ms p90_ms maxrss_kib fails
 *   percentiles are over the timed runs (linear interpolation), maxrss_kib is the max over the
 *   timed runs, fails counts every run (warm-up included) that did not exit with status 0,
 *   was killed by a signal, or hit the timeout.
 * -o SAMPLES appends one line per timed run: "ms maxrss_kib status" (status: exit code,
 *   128+signal if killed, 124 if timed out) so a caller can pool samples over many invocations.
 * -t TIMEOUT_S (default 0 = none): a run still going after that many seconds is killed with
 *   SIGKILL (its whole process group: each run gets a process group of its own) and counts as failed.
 *
 * Exit status: 0 if every run succeeded, 1 if some failed, 2 on usage or setup errors.
 * Build: gcc -O2 -Wall -Wextra -Werror -o timeit timeit.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t timed_out;

static void on_alarm(int sig) {
    (void)sig;
    timed_out = 1;
}

static void usage(void) {
    fprintf(stderr, "usage: timeit [-n RUNS] [-w WARMUP] [-t TIMEOUT_S] [-o SAMPLES] [-s OUT] [-E ERR] -- CMD [ARG...]\n");
    exit(2);
}

static long parse_num(const char *s, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < 0 || v > 100000000L) {
        fprintf(stderr, "timeit: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

/* Resolve CMD like execvp() would, once, so the PATH search is not part of any timed run. */
static char *resolve(const char *cmd) {
    if (strchr(cmd, '/')) return strdup(cmd);
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    size_t clen = strlen(cmd);
    for (const char *p = path;; ) {
        const char *colon = strchr(p, ':');
        size_t dlen = colon ? (size_t)(colon - p) : strlen(p);
        char buf[PATH_MAX];
        if (dlen + 1 + clen < sizeof buf) {
            if (dlen == 0) { buf[0] = '.'; dlen = 1; }
            else memcpy(buf, p, dlen);
            buf[dlen] = '/';
            memcpy(buf + dlen + 1, cmd, clen + 1);
            struct stat st;
            if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0) return strdup(buf);
        }
        if (!colon) break;
        p = colon + 1;
    }
    return NULL;
}

static int open_or_die(const char *path, int flags) {
    int fd = open(path, flags | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "timeit: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    return fd;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *sorted, long n, double p) {
    if (n <= 0) return 0.0;
    double pos = p * (double)(n - 1);
    long lo = (long)pos;
    if (lo >= n - 1) return sorted[n - 1];
    double frac = pos - (double)lo;
    return sorted[lo] + (sorted[lo + 1] - sorted[lo]) * frac;
}

/* One run: returns its status (exit code, 128+sig, 124 on timeout); *ms and *rss_kib are filled. */
static int run_once(const char *path, char **argv, int fd_in, int fd_out, int fd_err,
                    unsigned timeout_s, double *ms, long *rss_kib) {
    timed_out = 0;
    if (timeout_s) alarm(timeout_s);
    double t0 = now_ms();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "timeit: fork: %s\n", strerror(errno));
        exit(2);
    }
    if (pid == 0) {
        setpgid(0, 0);
        if (dup2(fd_in, 0) < 0 || dup2(fd_out, 1) < 0 || dup2(fd_err, 2) < 0) _exit(127);
        execve(path, argv, environ);
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    int killed = 0;
    for (;;) {
        pid_t r = wait4(pid, &st, 0, &ru);
        if (r == pid) break;
        if (r < 0 && errno == EINTR) {
            if (timed_out && !killed) {
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
                killed = 1;
            }
            continue;
        }
        fprintf(stderr, "timeit: wait4: %s\n", strerror(errno));
        exit(2);
    }
    double t1 = now_ms();
    if (timeout_s) alarm(0);
    *ms = t1 - t0;
    *rss_kib = ru.ru_maxrss;
    if (killed) {
        kill(-pid, SIGKILL); /* stragglers left in the run's process group */
        return 124;
    }
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return 255;
}

int main(int argc, char **argv) {
    long runs = 10, warmup = 1, timeout_s = 0;
    const char *samples_path = NULL, *out_path = NULL, *err_path = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "+n:w:t:o:s:E:h")) != -1) {
        switch (opt) {
        case 'n': runs = parse_num(optarg, "run count"); break;
        case 'w': warmup = parse_num(optarg, "warm-up count"); break;
        case 't': timeout_s = parse_num(optarg, "timeout"); break;
        case 'o': samples_path = optarg; break;
        case 's': out_path = optarg; break;
        case 'E': err_path = optarg; break;
        default: usage();
        }
    }
    if (optind >= argc || runs < 1) usage();
    char **cmd = argv + optind;
    char *path = resolve(cmd[0]);
    if (!path) {
        fprintf(stderr, "timeit: %s: command not found\n", cmd[0]);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: wait4() returns EINTR on timeout */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);

    int devnull_r = open_or_die("/dev/null", O_RDONLY);
    int devnull_w = open_or_die("/dev/null", O_WRONLY);
    int fd_out = out_path ? open_or_die(out_path, O_WRONLY | O_CREAT | O_APPEND) : devnull_w;
    int fd_err = err_path ? open_or_die(err_path, O_WRONLY | O_CREAT | O_APPEND) : devnull_w;
    FILE *samples = NULL;
    if (samples_path) {
        samples = fopen(samples_path, "ae");
        if (!samples) {
            fprintf(stderr, "timeit: %s: %s\n", samples_path, strerror(errno));
            return 2;
        }
    }

    double *ms = calloc((size_t)runs, sizeof *ms);
    int *status = calloc((size_t)runs, sizeof *status);
    long *rss = calloc((size_t)runs, sizeof *rss);
    if (!ms || !status || !rss) {
        fprintf(stderr, "timeit: out of memory\n");
        return 2;
    }

    long fails = 0;
    for (long i = 0; i < warmup; i++) {
        double t;
        long r;
        if (run_once(path, cmd, devnull_r, devnull_w, fd_err, (unsigned)timeout_s, &t, &r) != 0) fails++;
    }
    long maxrss = 0;
    for (long i = 0; i < runs; i++) {
        status[i] = run_once(path, cmd, devnull_r, fd_out, fd_err, (unsigned)timeout_s, &ms[i], &rss[i]);
        if (status[i] != 0) fails++;
        if (rss[i] > maxrss) maxrss = rss[i];
    }
    if (samples) {
        for (long i = 0; i < runs; i++) fprintf(samples, "%.4f %ld %d\n", ms[i], rss[i], status[i]);
        if (fclose(samples) != 0) {
            fprintf(stderr, "timeit: %s: %s\n", samples_path, strerror(errno));
            return 2;
        }
    }
    qsort(ms, (size_t)runs, sizeof *ms, cmp_double);
    printf("%.3f %.3f %.3f %ld %ld\n", percentile(ms, runs, 0.5), percentile(ms, runs, 0.1),
           percentile(ms, runs, 0.9), maxrss, fails);
    return fails ? 1 : 0;
}
