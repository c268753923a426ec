/* notif.h must be self-contained: it is the first and only include here, and
 * this file is compiled with -std=c99 -Wall -Wextra -Werror -pedantic. Its
 * types must be usable without any other header. */
#include "notif.h"

static int uses_everything(void)
{
    notif_stats stats;
    size_t size = sizeof(notif_stats);
    uint64_t total;
    stats.subscribers = 0;
    stats.fanout = 0;
    total = stats.subscribers + stats.fanout;
    return (int)(total + size - sizeof stats) + NOTIF_SLOW_DROP + NOTIF_SLOW_DISCONNECT - 1 +
           NOTIF_VERSION_MAJOR * 0;
}

int main(void)
{
    const char *(*version)(void) = notif_version;
    notif_handle *(*open_fn)(const char *) = notif_open;
    (void)version;
    (void)open_fn;
    return uses_everything();
}
