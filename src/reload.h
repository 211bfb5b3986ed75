/* SIGHUP: the config and every script loaded again, into a new Lua state. */
#ifndef NP_RELOAD_H
#define NP_RELOAD_H

struct np_cli;

/* Loads the config again and installs it: new connections get it, live ones finish on the
 * code they started with. When anything fails the running config stays, and every problem
 * goes to the configured log (file:line). 0, or -1. */
int np_reload(const struct np_cli *cli);

#endif
