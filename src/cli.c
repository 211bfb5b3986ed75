/* The command line: `netproxy [options] CONFIG.lua`. */
#include "cli.h"
#include "log.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "usage: netproxy [options] CONFIG.lua\n"
    "       netproxy [options] [-L [HOST:]PORT] [-P [SCHEME://]PROXYHOST:PORT]... HOST PORT\n"
    "       netproxy ctl [-S SOCKET] COMMAND... [--json]   (a running netproxy's control socket)\n"
    "Runs every proxy the Lua config script declares; or, in the one-line form, relays\n"
    "standard input and output (or, with -L, each client of a listening port) to HOST PORT,\n"
    "directly or through proxies (-P). As an ssh ProxyCommand:\n"
    "  ssh -o ProxyCommand='netproxy -P proxy.example:3128 %h %p' server\n"
    "  ssh -o ProxyCommand='netproxy -P http://a:3128 -P socks5://b:1080 %h %p' server\n"
    "\n"
    "  -c, -t, --check          load and check the config, bind nothing; exit 0 when valid\n"
    "  -m, --max-connections N  stop accepting after N connections, exit 0 once they are done\n"
    "                           (runs a single process)\n"
    "  -w, --workers N          worker processes (default: one per core; 1: a single process)\n"
    "  -v, --verbose            more log (repeatable)\n"
    "  -q, --quiet              less log (repeatable)\n"
    "      --log-level L        0..4 or err, warning, notice, info, debug (default notice)\n"
    "      --relay MODE         auto (splice when possible), splice or buffered\n"
    "  -D, --daemon             run in the background (logs to syslog unless --log-file)\n"
    "      --pid-file FILE      write the pid there (the file must not exist); removed at exit\n"
    "      --user U, --group G  run the workers as U / G once the listeners are bound\n"
    "      --chroot DIR         and inside DIR\n"
    "      --log-file F         log to file F (SIGUSR1 reopens it) or to \"syslog\"\n"
    "  -I, --connector-path DIR also look for connector scripts in DIR (repeatable)\n"
    "      --set KEY=VALUE      set a server{} option (repeatable): --set stats=127.0.0.1:9100,\n"
    "                           --set reuseport=true, --set allow=10.0.0.0/8,192.0.2.1\n"
    "  -L, --listen [HOST:]PORT one-line form: listen there (HOST defaults to localhost)\n"
    "  -P, --via [SCHEME://]HOST:PORT\n"
    "                           one-line form: through this proxy, http:// (HTTP CONNECT, the\n"
    "                           default), https:// (CONNECT over TLS to the proxy, verified\n"
    "                           against the system's CAs or $SSL_CERT_FILE) or socks5://;\n"
    "                           repeated: a chain, in the order given\n"
    "      --proxy-user USER    credentials for the first -P (the password is read from the\n"
    "                           NETPROXY_PROXY_PASS environment variable, or --proxy-pass)\n"
    "      --proxy-pass PASS    visible to other users in the process list: prefer the variable\n"
    "      --proxy-agent TEXT   User-Agent for -P\n"
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

/* Two operands are the one-line form's HOST PORT, unless the first is plainly a config
 * script (a .lua name, or a file when the second is no port number): `netproxy --check
 * a.lua extra` is a usage error, not a check of a one-line form to host "a.lua". */
static int looks_like_script(const char *first, const char *second)
{
    size_t n = strlen(first);
    struct stat st;

    if (n > 4 && !strcmp(first + n - 4, ".lua")) return 1;
    return strspn(second, "0123456789") != strlen(second) && stat(first, &st) == 0 && S_ISREG(st.st_mode);
}

int np_cli_parse(int argc, char **argv, struct np_cli *cli)
{
    static const struct option longopts[] = {
        { "check", no_argument, NULL, 'c' },
        { "max-connections", required_argument, NULL, 'm' },
        { "workers", required_argument, NULL, 'w' },
        { "verbose", no_argument, NULL, 'v' },
        { "quiet", no_argument, NULL, 'q' },
        { "log-level", required_argument, NULL, 'G' },
        { "relay", required_argument, NULL, 'R' },
        { "connector-path", required_argument, NULL, 'I' },
        { "set", required_argument, NULL, 'S' },
        { "listen", required_argument, NULL, 'l' },
        { "via", required_argument, NULL, 'P' },
        { "proxy-user", required_argument, NULL, 'u' },
        { "proxy-pass", required_argument, NULL, 'p' },
        { "proxy-agent", required_argument, NULL, 'a' },
        { "daemon", no_argument, NULL, 'D' },
        { "pid-file", required_argument, NULL, 'f' },
        { "user", required_argument, NULL, 'U' },
        { "group", required_argument, NULL, 'g' },
        { "chroot", required_argument, NULL, 'r' },
        { "log-file", required_argument, NULL, 'o' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    char *end;
    int opt;

    memset(cli, 0, sizeof *cli);
    cli->max_connections = -1;
    cli->log_level = -1;
    while ((opt = getopt_long(argc, argv, "ctm:w:vqI:L:P:DVh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
        case 't': cli->check = 1; break;
        case 'm':
            cli->max_connections = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end || cli->max_connections < 1)
                return bad_usage("--max-connections wants a positive number, not '%s'", optarg);
            break;
        case 'w':
            cli->workers = (int)strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || cli->workers < 1 || cli->workers > 63)
                return bad_usage("--workers wants 1..63, not '%s'", optarg);
            break;
        case 'v': cli->verbose++; break;
        case 'q': cli->verbose--; break;
        case 'G':
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
        case 'S':
            if (!strchr(optarg, '=')) return bad_usage("--set wants KEY=VALUE, not '%s'", optarg);
            if (cli->nset == 32) return bad_usage("%s", "too many --set");
            cli->set[cli->nset++] = optarg;
            break;
        case 'L':
        case 'l': cli->listen = optarg; break;
        case 'P':
            if (cli->nvia == (int)(sizeof cli->via / sizeof cli->via[0]))
                return bad_usage("%s", "at most 8 -P proxies");
            cli->via[cli->nvia++] = optarg;
            break;
        case 'u': cli->proxy_user = optarg; break;
        case 'p': cli->proxy_pass = optarg; break;
        case 'a': cli->proxy_agent = optarg; break;
        case 'D': cli->daemon = 1; break;
        case 'f': cli->pid_file = optarg; break;
        case 'U': cli->user = optarg; break;
        case 'g': cli->group = optarg; break;
        case 'r': cli->chroot = optarg; break;
        case 'o': cli->log_file = optarg; break;
        case 'V': printf("netproxy %s\n", NP_VERSION); return 0;
        case 'h': fputs(usage, stdout); return 0;
        default: return bad_usage("%s", "unknown option");
        }
    }
    if (argc - optind == 2 && looks_like_script(argv[optind], argv[optind + 1]))
        return bad_usage("'%s' after the config script: want CONFIG.lua alone, or HOST PORT", argv[optind + 1]);
    if (argc - optind == 2) {
        cli->target_host = argv[optind];
        cli->target_port = argv[optind + 1];
        if (!cli->proxy_pass) cli->proxy_pass = getenv("NETPROXY_PROXY_PASS");
        return -1;
    }
    if (cli->listen || cli->nvia || cli->proxy_user)
        return bad_usage("%s", "-L, -P and --proxy-user go with the one-line form: ... HOST PORT");
    if (optind != argc - 1)
        return bad_usage("%s", optind < argc ? "want CONFIG.lua, or HOST PORT" : "no config script given");
    cli->config = argv[optind];
    return -1;
}
