// cpp-hello: a Nur function in C++ (clang++ for wasm32-wasi, with libc++ and
// wasi-libc from Debian's packages), on the Nur ABI.
//
// It gathers an HTTP request across chunks until the blank line that ends
// its headers, then answers 200 with a greeting for the request's path and
// the number of headers, built with std::string and std::string_view; the
// request line goes to the function's log through nur_log.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" {
__attribute__((import_module("nur"), import_name("nur_send"))) void nur_send(const char *ptr, uint32_t len);
__attribute__((import_module("nur"), import_name("nur_log"))) void nur_log(const char *ptr, uint32_t len);
__attribute__((import_module("nur"), import_name("nur_end"))) void nur_end();
}

namespace {

constexpr std::size_t max_request = 64 * 1024;

// One instance serves one connection: globals are per connection.
std::string request;
std::string chunk;

void send(std::string_view bytes) { nur_send(bytes.data(), static_cast<uint32_t>(bytes.size())); }

void answer(std::string_view status, std::string_view body) {
    std::string head = "HTTP/1.1 ";
    head += status;
    head += "\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ";
    head += std::to_string(body.size());
    head += "\r\nconnection: close\r\n\r\n";
    send(head);
    send(body);
    nur_end();
}

void respond() {
    std::string_view text(request);
    std::string_view line = text.substr(0, text.find("\r\n"));
    nur_log(line.data(), static_cast<uint32_t>(line.size()));
    std::size_t method_end = line.find(' ');
    std::size_t path_end = line.find(' ', method_end + 1);
    if (method_end == std::string_view::npos || path_end == std::string_view::npos) {
        answer("400 Bad Request", "400 Bad Request: no request line\n");
        return;
    }
    std::string_view path = line.substr(method_end + 1, path_end - method_end - 1);
    std::size_t headers = 0;
    for (std::size_t at = text.find("\r\n"); at != std::string_view::npos && at + 2 < text.size();
         at = text.find("\r\n", at + 2)) {
        if (text.compare(at, 4, "\r\n\r\n") == 0) break;
        headers++;
    }
    std::string body = "Hello from C++, ";
    body += path;
    body += " (" + std::to_string(headers) + " headers)\n";
    answer("200 OK", body);
}

}  // namespace

extern "C" {

__attribute__((export_name("alloc"))) char *alloc(uint32_t len) {
    chunk.resize(len);
    return chunk.data();
}

__attribute__((export_name("poll_stream"))) void poll_stream(const char *ptr, uint32_t len) {
    if (len == 0) {
        answer("400 Bad Request", "400 Bad Request: incomplete request\n");
        return;
    }
    request.append(ptr, len);
    if (request.find("\r\n\r\n") != std::string::npos) {
        respond();
    } else if (request.size() > max_request) {
        answer("431 Request Header Fields Too Large", "431: headers over 64 KiB\n");
    }
}
}
