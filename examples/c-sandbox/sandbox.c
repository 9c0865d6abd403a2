/* c-sandbox: a WASI command in C with wasi-libc (Debian's wasi-libc).
 *
 * It reads what the client sends until the client closes its side, then
 * answers with what a function sees of the world: its arguments (only its
 * own name), its environment (only the NurFunction's spec.env), and what
 * opening a file of the host gives (no file is reachable). stdout is the
 * connection; stderr is the function's log. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

extern char **environ;

int main(int argc, char **argv) {
    char buffer[4096];
    size_t bytes = 0, got;
    while ((got = fread(buffer, 1, sizeof buffer, stdin)) > 0) {
        bytes += got;
    }
    printf("read %zu bytes\n", bytes);
    for (int i = 0; i < argc; i++) {
        printf("arg %d: %s\n", i, argv[i]);
    }
    for (char **variable = environ; *variable; variable++) {
        printf("env: %s\n", *variable);
    }
    const char *files[] = {"/etc/passwd", "/proc/self/environ", "../../etc/hostname"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        FILE *file = fopen(files[i], "r");
        printf("open %s: %s\n", files[i], file ? "opened" : strerror(errno));
        if (file) {
            fclose(file);
        }
    }
    fprintf(stderr, "c-sandbox: answered %zu bytes\n", bytes);
    return 0;
}
