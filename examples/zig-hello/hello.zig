//! zig-hello: a Nur function in Zig (freestanding, no libc). It answers the
//! first chunk a client sends with an HTTP/1.1 200 response that greets it,
//! and logs the chunk's size.
//! The ABI: https://github.com/nur-dev/nur/blob/main/docs/ABI.md

const std = @import("std");

extern "nur" fn nur_send(ptr: [*]const u8, len: usize) void;
extern "nur" fn nur_log(ptr: [*]const u8, len: usize) void;
extern "nur" fn nur_end() void;

var buffer: [65536]u8 = undefined;

const body = "Hello from zig-hello!\n";
const log_prefix = "zig-hello: ";
const log_suffix = " bytes";
const head = std.fmt.comptimePrint("HTTP/1.1 200 OK\r\ncontent-length: {d}\r\n\r\n", .{body.len});

/// Where the host writes the next chunk of input (at most `len` bytes).
export fn alloc(len: usize) ?[*]u8 {
    return if (len <= buffer.len) &buffer else null;
}

/// A chunk of input arrived (`len` 0: the client closed its side).
export fn poll_stream(ptr: [*]const u8, len: usize) void {
    _ = ptr;
    // "zig-hello: N bytes", N in decimal, written backwards from the end.
    var line: [log_prefix.len + 20 + log_suffix.len]u8 = undefined;
    var i = line.len - log_suffix.len;
    @memcpy(line[i..], log_suffix);
    var n = len;
    while (true) : (n /= 10) {
        i -= 1;
        line[i] = '0' + @as(u8, @intCast(n % 10));
        if (n < 10) break;
    }
    i -= log_prefix.len;
    @memcpy(line[i..][0..log_prefix.len], log_prefix);
    const text = line[i..];
    nur_log(text.ptr, text.len);
    nur_send(head.ptr, head.len);
    nur_send(body.ptr, body.len);
    nur_end();
}
