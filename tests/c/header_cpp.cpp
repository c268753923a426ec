// The header from C++: it must compile with -std=c++11 -Wall -Wextra -Werror
// -pedantic, declare everything extern "C" (or this would not link), and be
// usable with C++ idioms (RAII wrappers, std::string).
#include "notif.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

namespace {

struct HandleCloser {
    void operator()(notif_handle *handle) const { notif_close(handle); }
};
struct OptionsFreer {
    void operator()(notif_options *opts) const { notif_options_free(opts); }
};
struct Unsubscriber {
    void operator()(notif_subscriber *s) const { notif_unsubscribe(s); }
};

int fail(const char *what) {
    std::fprintf(stderr, "header_cpp: %s: %s\n", what, notif_last_error());
    return 1;
}

}  // namespace

int main() {
    const std::string expected = std::to_string(NOTIF_VERSION_MAJOR) + "." +
                                 std::to_string(NOTIF_VERSION_MINOR) + "." +
                                 std::to_string(NOTIF_VERSION_PATCH);
    if (expected != notif_version()) return fail("version");

    std::unique_ptr<notif_options, OptionsFreer> opts(notif_options_new());
    if (!opts) return fail("notif_options_new");
    if (notif_options_set_max_message(opts.get(), 4096) != 0) return fail("set_max_message");
    if (notif_options_set_slow_policy(opts.get(), 42) != -EINVAL) return fail("set_slow_policy");

    const std::string name = "@notif-header-cpp-" + std::to_string(static_cast<long>(getpid()));
    std::unique_ptr<notif_handle, HandleCloser> handle(notif_open_with(name.c_str(), opts.get()));
    if (!handle) return fail("notif_open_with");

    // Nobody is connected: dropped at once.
    if (notif_emit(handle.get(), "{\"from\": \"C++\"}") != 0) return fail("notif_emit");
    const std::string json = "{\"len\": 1}";
    if (notif_emit_len(handle.get(), json.data(), json.size()) != 0) return fail("notif_emit_len");
    if (notif_emit(nullptr, "{}") != -EINVAL) return fail("notif_emit(nullptr)");

    notif_stats stats;
    std::memset(&stats, 0, sizeof stats);
    if (notif_get_stats(handle.get(), &stats, sizeof(notif_stats)) != 0) return fail("get_stats");
    if (stats.dropped_no_subscriber != 2) return fail("dropped_no_subscriber");
    if (std::strlen(notif_strerror(-EMSGSIZE)) == 0) return fail("strerror");

    // The subscriber client, from C++, against the publisher above.
    std::unique_ptr<notif_subscriber, Unsubscriber> sub(notif_subscribe(name.c_str(), nullptr));
    if (!sub) return fail("notif_subscribe");
    if (notif_subscriber_fd(sub.get()) < -1) return fail("notif_subscriber_fd");
    const char *msg = nullptr;
    size_t len = 0;
    if (notif_recv(sub.get(), &msg, &len, 0) < 0) return fail("notif_recv");
    if (notif_subscriber_dropped(sub.get()) != 0) return fail("notif_subscriber_dropped");
    sub.reset();

    std::printf("header_cpp: OK (libnotif %s from C++)\n", notif_version());
    return 0;
}
