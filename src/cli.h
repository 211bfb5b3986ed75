/* The command line. */
#ifndef NP_CLI_H
#define NP_CLI_H

struct np_cli {
    const char *config;
    int check;
    long long max_connections;  /* -1: not given */
    int log_level;              /* -1: not given */
    int verbose;                /* -v count minus -q count */
    const char *relay;          /* NULL: not given */
    int workers;                /* 0: not given */
    int daemon;
    const char *pid_file, *user, *group, *chroot, *log_file;
    const char *connector_path[16];
    int nconnector_path;
    const char *set[32];        /* --set KEY=VALUE: server{} options, checked by netproxy.config */
    int nset;
    /* the one-line form: [-L [HOST:]PORT] [-P [SCHEME://]PROXYHOST:PORT]... HOST PORT */
    const char *target_host, *target_port;
    const char *listen, *proxy_user, *proxy_pass, *proxy_agent;
    const char *via[8];         /* -P in the order given: a chain when more than one */
    int nvia;
};

/* Fills cli from argv. Returns -1 to carry on, else the exit status (after --help,
 * --version, or a usage error already reported). */
int np_cli_parse(int argc, char **argv, struct np_cli *cli);

#endif
