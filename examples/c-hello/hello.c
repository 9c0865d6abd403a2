/*
 * c-hello: a Nur function in C, without libc.
 *
 * Answers the first input chunk with "HTTP/1.1 200 OK" and the body
 * "hello from C", then ends the connection. Memory for input chunks comes
 * from a static bump allocator that starts over with every chunk (a chunk is
 * done with before the next one is allocated).
 *
 * Build: clang --target=wasm32 -nostdlib -O2 -Wl,--no-entry \
 *          -Wl,--export=alloc -Wl,--export=poll_stream -o c-hello.wasm hello.c
 */

#define IMPORT(name) __attribute__((import_module("nur"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

typedef unsigned int u32;
typedef unsigned char u8;

IMPORT("nur_send") void nur_send(const void *ptr, u32 len);
IMPORT("nur_log") void nur_log(const void *ptr, u32 len);
IMPORT("nur_end") void nur_end(void);

/* Chunks are at most 64 KiB by default; a larger one grows memory. */
#define ARENA_SIZE (64 * 1024)
static u8 arena[ARENA_SIZE];

EXPORT("alloc") void *alloc(u32 len) {
    if (len <= ARENA_SIZE)
        return arena;
    /* Too big for the arena: take fresh pages at the end of memory. */
    u32 pages = (len + 65535u) / 65536u;
    unsigned long old = __builtin_wasm_memory_grow(0, pages);
    if (old == (unsigned long)-1)
        __builtin_trap();
    return (void *)(old * 65536);
}

static const char response[] =
    "HTTP/1.1 200 OK\r\n"
    "content-type: text/plain\r\n"
    "content-length: 13\r\n"
    "connection: close\r\n"
    "\r\n"
    "hello from C\n";

static const char log_line[] = "c-hello: answered";

EXPORT("poll_stream") void poll_stream(u8 *ptr, u32 len) {
    (void)ptr;
    (void)len;
    /* The first chunk, or EOF before any: answer and end either way. */
    nur_log(log_line, sizeof log_line - 1);
    nur_send(response, sizeof response - 1);
    nur_end();
}
