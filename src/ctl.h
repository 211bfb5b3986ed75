/* `netproxy ctl`: the command-line client of the control socket (control.c). */
#ifndef NP_CTL_H
#define NP_CTL_H

/* argv[0] is "ctl". Returns the exit status. */
int np_ctl_main(int argc, char **argv);

#endif
