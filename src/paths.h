/* Where netproxy's own Lua modules and connectors are, found from the binary's place. */
#ifndef NP_PATHS_H
#define NP_PATHS_H

/* The folder holding lua/ and connectors/: the checkout when the binary is the one built in
 * its build tree, else ../share/netproxy relative to the binary (an installed or relocated
 * tree). Computed once; the string is static. */
const char *np_paths_datadir(void);

#endif
