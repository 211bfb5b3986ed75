/* How a connection ended: the names and classes of the fixed vocabulary in end.h. */
#include "end.h"

#include <errno.h>
#include <string.h>

static const struct {
    const char *name;
    enum np_end_class class;
} ends[NP_END_COUNT] = {
    [NP_END_NONE] = { "running", NP_END_CLEAN },
    [NP_END_EOF] = { "eof", NP_END_CLEAN },
    [NP_END_CLOSED] = { "closed", NP_END_CLEAN },
    [NP_END_REFUSED] = { "refused", NP_END_REFUSAL },
    [NP_END_CONNECT_FAILED] = { "connect failed", NP_END_FAILURE },
    [NP_END_NEGOTIATION_TIMEOUT] = { "negotiation timeout", NP_END_FAILURE },
    [NP_END_IDLE_TIMEOUT] = { "idle timeout", NP_END_FAILURE },
    [NP_END_TOTAL_TIMEOUT] = { "total timeout", NP_END_FAILURE },
    [NP_END_TIMEOUT] = { "timeout", NP_END_FAILURE },
    [NP_END_CLIENT_RESET] = { "client reset", NP_END_FAILURE },
    [NP_END_SERVER_RESET] = { "server reset", NP_END_FAILURE },
    [NP_END_CLIENT_ERROR] = { "client error", NP_END_FAILURE },
    [NP_END_SERVER_ERROR] = { "server error", NP_END_FAILURE },
    [NP_END_CLIENT_TLS] = { "client tls", NP_END_FAILURE },
    [NP_END_SERVER_TLS] = { "server tls", NP_END_FAILURE },
    [NP_END_CLIENT_STARTTLS] = { "client starttls", NP_END_FAILURE },
    [NP_END_SERVER_STARTTLS] = { "server starttls", NP_END_FAILURE },
    [NP_END_LUA_ERROR] = { "lua error", NP_END_FAILURE },
    [NP_END_NO_MEMORY] = { "out of memory", NP_END_FAILURE },
    [NP_END_STOPPED] = { "stopped", NP_END_FAILURE },
    [NP_END_DRAINED] = { "drained", NP_END_FAILURE },
    [NP_END_EVICTED] = { "evicted", NP_END_FAILURE },
};

const char *np_end_name(enum np_end e)
{
    return e >= 0 && e < NP_END_COUNT ? ends[e].name : "?";
}

enum np_end np_end_parse(const char *name)
{
    for (int e = NP_END_EOF; e < NP_END_COUNT; e++)
        if (!strcmp(ends[e].name, name)) return e;
    return NP_END_NONE;
}

enum np_end_class np_end_class(enum np_end e)
{
    return e >= 0 && e < NP_END_COUNT ? ends[e].class : NP_END_FAILURE;
}

enum np_end np_end_io(int side, int err)
{
    if (err == EPROTO) return side ? NP_END_SERVER_TLS : NP_END_CLIENT_TLS;
    if (err == ECONNRESET || err == EPIPE) return side ? NP_END_SERVER_RESET : NP_END_CLIENT_RESET;
    return side ? NP_END_SERVER_ERROR : NP_END_CLIENT_ERROR;
}
