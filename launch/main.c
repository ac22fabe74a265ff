/* main.c — the asymkv binary: start MPI, pick the subcommand, parse its options, settle the CPU
 * threads per rank, run it. */
#define _GNU_SOURCE /* sched_getaffinity */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "comm.h"
#include "kernels.h"

/* --threads, else OMP_NUM_THREADS, else SLURM_CPUS_PER_TASK, else the CPUs this rank may run on,
 * at most the node's CPUs shared among its ranks. */
static int cpu_threads(int flag, int local_size) {
    if (flag > 0) return flag;
    const char *vars[] = {"OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"};
    for (int i = 0; i < 2; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN), n = online;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    const long share = online / (local_size > 0 ? local_size : 1);
    if (share < n) n = share;
    return n > 0 ? (int)n : 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        cli_print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const cmd_def *cmd = NULL;
    for (const cmd_def *const *c = cli_commands; *c; c++)
        if (!strcmp((*c)->name, argv[1])) cmd = *c;
    if (!cmd) {
        fprintf(stderr, "asymkv: unknown command \"%s\" (run asymkv --help for the list)\n", argv[1]);
        return 2;
    }
    cli_settings s;
    akv_err err = {0};
    if (cli_parse(cmd, argc - 2, argv + 2, &s, &err)) {
        if (comm_env_rank() <= 0) /* every rank parses the same flags: rank 0 tells */
            fprintf(stderr, "asymkv %s: error: %s\n", cmd->name, err.msg);
        return 2;
    }
    if (s.help) {
        cli_print_help(stdout, cmd);
        return 0;
    }
    if (s.threads < 0 || s.threads > 4096) {
        if (comm_env_rank() <= 0)
            fprintf(stderr, "asymkv %s: error: --threads must be 0 (automatic) .. 4096, not %d\n",
                    cmd->name, s.threads);
        return 2;
    }
    comm_world world;
    if (comm_world_init(&world, &argc, &argv, &err)) {
        fprintf(stderr, "asymkv: error: %s\n", err.msg);
        return (int)err.code;
    }
    s.threads = cpu_threads(s.threads, world.local_size);
    kernels_set_threads(s.threads);
    s.cmd = cmd;
    s.rank = world.rank;
    s.world = &world;
    int rc = cmd->run(&s);
    comm_world_finalize();
    return rc;
}
