/* A program built against an installed libnotif, found with pkg-config: it
 * publishes on an abstract socket, reads what it emitted back and checks the
 * installed header and library agree. */
#include <notif.h>

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    char name[64], version[32], line[128];
    struct sockaddr_un addr;
    socklen_t len;
    notif_handle *handle;
    size_t used = 0;
    int fd, rc = 0, i;

    snprintf(version, sizeof version, "%d.%d.%d", NOTIF_VERSION_MAJOR, NOTIF_VERSION_MINOR,
             NOTIF_VERSION_PATCH);
    if (strcmp(version, notif_version()) != 0) {
        fprintf(stderr, "app: header %s but library %s\n", version, notif_version());
        return 1;
    }
    snprintf(name, sizeof name, "@notif-install-app-%ld", (long)getpid());
    handle = notif_open(name);
    if (handle == NULL) {
        fprintf(stderr, "app: notif_open: %s\n", notif_last_error());
        return 1;
    }
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path + 1, name + 1, strlen(name) - 1);
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, len) != 0) {
        perror("app: connect");
        notif_close(handle);
        return 1;
    }
    for (i = 0; i < 1000 && rc == 0; i++) { /* until the server thread has accepted us */
        struct timespec t = {0, 5000000};
        rc = notif_emit(handle, "{\"installed\": true}");
        if (rc == 0)
            nanosleep(&t, NULL);
    }
    while (rc == 1 && used < sizeof line - 1) {
        if (read(fd, line + used, 1) != 1)
            break;
        if (line[used++] == '\n')
            break;
    }
    line[used] = '\0';
    close(fd);
    notif_close(handle);
    if (strcmp(line, "{\"installed\":true}\n") != 0) {
        fprintf(stderr, "app: emit returned %d, read \"%s\"\n", rc, line);
        return 1;
    }
    printf("app: libnotif %s installed and working\n", notif_version());
    return 0;
}
