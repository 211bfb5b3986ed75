/* A short, stable token for an errno ("refused", "timeout"...), as OpenResty's cosockets
 * give: what Lua sees of a failed connect or I/O, and what the log line says. */
#ifndef NP_ERRTOKEN_H
#define NP_ERRTOKEN_H
#include <errno.h>
#include <string.h>

static inline const char *np_err_token(int err)
{
    switch (err) {
    case ECONNREFUSED: return "refused";
    case ETIMEDOUT: return "timeout";
    case ENETUNREACH:
    case EHOSTUNREACH: return "unreachable";
    case ECONNRESET: return "reset";
    case EPIPE: return "closed";
    default: return strerror(err);
    }
}

#endif
