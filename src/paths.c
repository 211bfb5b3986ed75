/* Finds lua/ and connectors/ for this binary: relative to where the binary is, so an
 * installed tree works wherever it was installed or moved to, and never in a source tree,
 * except for the binary of a build tree, which runs the checkout it was built from. */
#include "paths.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* From CMake: the build tree and the checkout of this build, the data folder relative to
 * the binary's folder once installed ("../share/netproxy"), and the configured absolute
 * one as a last resort (no /proc). */
#ifndef NP_BUILD_DIR
#define NP_BUILD_DIR ""
#endif
#ifndef NP_SOURCE_DIR
#define NP_SOURCE_DIR ""
#endif
#ifndef NP_REL_DATADIR
#define NP_REL_DATADIR "../share/netproxy"
#endif
#ifndef NP_INSTALL_DATADIR
#define NP_INSTALL_DATADIR "/usr/local/share/netproxy"
#endif

static char datadir[PATH_MAX];

/* The folder of the running binary, resolved (symlinks included), or -1. */
static int exe_dir(char *out, size_t outlen)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash;

    if (n <= 0) return -1;
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (!slash) return -1;
    *slash = '\0';
    snprintf(out, outlen, "%s", slash == exe ? "/" : exe);
    return 0;
}

/* Is dir the build tree this binary was compiled in? Compared resolved, so a build folder
 * reached through a symlink still counts, and a build tree that is gone never does. A
 * compiled-in path rather than a marker file: an installed copy cannot be mistaken for the
 * build tree's binary by a file left lying next to it. */
static int is_build_tree(const char *dir)
{
    char build[PATH_MAX];

    return NP_BUILD_DIR[0] && realpath(NP_BUILD_DIR, build) && !strcmp(build, dir);
}

const char *np_paths_datadir(void)
{
    char dir[PATH_MAX], joined[PATH_MAX];

    if (datadir[0]) return datadir;
    if (exe_dir(dir, sizeof dir) < 0) {
        snprintf(datadir, sizeof datadir, "%s", NP_INSTALL_DATADIR);
    } else if (is_build_tree(dir)) {
        snprintf(datadir, sizeof datadir, "%s", NP_SOURCE_DIR);
    } else if (snprintf(joined, sizeof joined, "%s/%s", dir, NP_REL_DATADIR) >= (int)sizeof joined) {
        snprintf(datadir, sizeof datadir, "%s", NP_INSTALL_DATADIR);
    } else {
        if (!realpath(joined, datadir)) snprintf(datadir, sizeof datadir, "%s", joined);
    }
    return datadir;
}
