/* main.c — the asymkv binary: start MPI, pick the subcommand, parse its options, run it. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "comm.h"

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
    comm_world world;
    if (comm_world_init(&world, &argc, &argv, &err)) {
        fprintf(stderr, "asymkv: error: %s\n", err.msg);
        return (int)err.code;
    }
    s.cmd = cmd;
    s.rank = world.rank;
    s.world = &world;
    int rc = cmd->run(&s);
    comm_world_finalize();
    return rc;
}
