/* The command line: `netproxy [options] CONFIG.lua`. */
#include "cli.h"
#include "log.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: netproxy [options] CONFIG.lua\n"
    "Runs every proxy the Lua config script declares.\n"
    "\n"
    "  -c, -t, --check          load and check the config, bind nothing; exit 0 when valid\n"
    "  -m, --max-connections N  stop accepting after N connections, exit 0 once they are done\n"
    "  -v, --verbose            more log (repeatable)\n"
    "  -q, --quiet              less log (repeatable)\n"
    "      --log-level L        0..4 or err, warning, notice, info, debug (default notice)\n"
    "      --relay MODE         auto (splice when possible), splice or buffered\n"
    "  -I, --connector-path DIR also look for connector scripts in DIR (repeatable)\n"
    "  -V, --version            print the version\n"
    "  -h, --help               print this help\n"
    "\n"
    "Command-line options win over the same options in the script's server{}.\n";

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "netproxy: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'netproxy --help'.\n");
    return 2;
}

int np_cli_parse(int argc, char **argv, struct np_cli *cli)
{
    static const struct option longopts[] = {
        { "check", no_argument, NULL, 'c' },
        { "max-connections", required_argument, NULL, 'm' },
        { "verbose", no_argument, NULL, 'v' },
        { "quiet", no_argument, NULL, 'q' },
        { "log-level", required_argument, NULL, 'L' },
        { "relay", required_argument, NULL, 'R' },
        { "connector-path", required_argument, NULL, 'I' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    char *end;
    int opt;

    memset(cli, 0, sizeof *cli);
    cli->max_connections = -1;
    cli->log_level = -1;
    while ((opt = getopt_long(argc, argv, "ctm:vqI:Vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
        case 't': cli->check = 1; break;
        case 'm':
            cli->max_connections = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end || cli->max_connections < 1)
                return bad_usage("--max-connections wants a positive number, not '%s'", optarg);
            break;
        case 'v': cli->verbose++; break;
        case 'q': cli->verbose--; break;
        case 'L':
            cli->log_level = np_log_level_parse(optarg);
            if (cli->log_level < 0)
                return bad_usage("--log-level wants 0..4 or err..debug, not '%s'", optarg);
            break;
        case 'R':
            if (strcmp(optarg, "auto") && strcmp(optarg, "splice") && strcmp(optarg, "buffered"))
                return bad_usage("--relay wants auto, splice or buffered, not '%s'", optarg);
            cli->relay = optarg;
            break;
        case 'I':
            if (cli->nconnector_path == 16) return bad_usage("%s", "too many --connector-path");
            cli->connector_path[cli->nconnector_path++] = optarg;
            break;
        case 'V': printf("netproxy %s\n", NP_VERSION); return 0;
        case 'h': fputs(usage, stdout); return 0;
        default: return bad_usage("%s", "unknown option");
        }
    }
    if (optind != argc - 1)
        return bad_usage("%s", optind < argc ? "one config script only" : "no config script given");
    cli->config = argv[optind];
    return -1;
}
